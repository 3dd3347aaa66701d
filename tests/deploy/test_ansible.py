"""The Ansible deployment, run for real on this machine, under two Ansibles:
Debian 12's (ansible-core 2.14, from apt) and the current `ansible` release
from PyPI (with its ansible-lint), which the test installs into a virtualenv
under ~/.cache/hanode (upgraded once per session).  Every test below runs
under both.

- ansible-lint (production profile) and a syntax check of the playbook;
- the example inventory in check mode against this machine, as an operator
  would try it first (no systemd here: units enabled, not started);
- a real run into a scratch install root: the wheelhouse is built from this
  checkout and installed into a virtualenv there, the config and the units
  are rendered there, a second run changes nothing, and what was rendered
  works: the config passes `hanode config check`, the units pass
  `systemd-analyze verify`, and an etcd started with the rendered drop-in's
  flags and the playbook's certificates, with auth switched on by the role's
  own tasks, serves a Store built from the rendered config.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from hanode import config, embedded_etcd
from hanode.store import Store, StoreUnavailable

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "deploy" / "ansible"
UNIT = REPO / "deploy" / "systemd" / "hanode-agent.service"
HOST = "hnlocal"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# The roles' modules run under Debian's Python: the apt module needs python3-apt,
# which exists only for it (interpreter discovery may find another Python).
NODE_PYTHON = "/usr/bin/python3"
PYPI_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hanode" / "ansible-pypi"


@dataclass(frozen=True)
class Ansible:
    """One Ansible installation: where its ansible-playbook and ansible-lint are."""
    name: str
    bindir: Path

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def _pypi_ansible() -> Ansible:
    """The current `ansible` and `ansible-lint` from PyPI, in a virtualenv of their own
    made with Debian's Python (the controller's Python the roles document)."""
    python = PYPI_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([NODE_PYTHON, "-m", "venv", str(PYPI_VENV)], check=True,
                       capture_output=True)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade",
                           "ansible", "ansible-lint"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"pip install ansible ansible-lint failed:\n{proc.stderr[-3000:]}"
    return Ansible("pypi", PYPI_VENV / "bin")


@pytest.fixture(scope="session", params=["debian", "pypi"])
def ansible(request) -> Ansible:
    if request.param == "debian":
        return Ansible("debian", Path("/usr/bin"))
    return _pypi_ansible()


def run(cmd: list[str], cwd: Path = ANSIBLE, env: dict[str, str] | None = None,
        timeout: float = 300) -> str:
    """Run a tool that must succeed; its whole output is the failure message."""
    assert shutil.which(cmd[0]), f"{cmd[0]} is not installed (scripts/setup.sh installs it)"
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
             "PY_COLORS": "0", "NO_COLOR": "1", **(env or {})})
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-6000:]}"
    return out


def recap(output: str) -> dict[str, tuple[int, int, int, int]]:
    return {m[1]: tuple(int(x) for x in m.groups()[1:]) for m in RECAP.finditer(output)}


def test_ansible_lint_production_profile_is_clean(ansible):
    out = run([ansible.tool("ansible-lint"), "--profile", "production", "--nocolor",
               "site.yml", "inventory.example.yml", "group_vars", "roles"],
              env={"PATH": f"{ansible.bindir}:{os.environ['PATH']}"})
    # ansible-lint 6 says "Passed with production profile: 0 failure(s), ...";
    # later ones "Passed: 0 failure(s), ... Profile 'production' was required, and it passed."
    assert re.search(r"Passed.*: 0 failure\(s\), 0 warning\(s\)", out), out
    assert "production" in out


def test_syntax_check(ansible):
    run([ansible.tool("ansible-playbook"), "-i", "inventory.example.yml", "site.yml",
         "--syntax-check"])


def test_example_inventory_in_check_mode_on_this_machine(ansible, tmp_path):
    out = run([ansible.tool("ansible-playbook"), "-i", "inventory.example.yml", "site.yml",
               "--check", "-e", "ansible_connection=local", "--limit", "all[0]",
               "-e", f"ansible_python_interpreter={NODE_PYTHON}",
               "-e", f"hanode_controller_dir={tmp_path}"])
    ok, changed, unreachable, failed = recap(out)["node1"]
    assert (unreachable, failed) == (0, 0) and ok > 20
    assert "hanode-agent.service is installed and enabled, and not started: " \
           "systemd is not running here" in out
    assert not Path("/etc/hanode/hanode.toml").exists()  # check mode wrote nothing


@dataclass
class Install:
    ansible: Ansible
    root: Path
    controller: Path
    inventory: Path
    first: str
    second: str
    client_port: int
    metrics_url: str

    @property
    def config_file(self) -> Path:
        return self.root / "etc/hanode/hanode.toml"

    @property
    def hanode(self) -> Path:
        return self.root / "opt/hanode/venv/bin/hanode"

    @property
    def units(self) -> Path:
        return self.root / "etc/systemd/system"


@pytest.fixture(scope="module")
def install(ansible, tmp_path_factory) -> Install:
    base = tmp_path_factory.mktemp(f"deploy-{ansible.name}")
    root, controller = base / "root", base / "controller"
    client_port, peer_port = embedded_etcd.free_port(), embedded_etcd.free_port()
    metrics_url = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    inventory = base / "inventory.yml"
    # Host variables: they beat the playbook's group_vars/all.yml.
    inventory.write_text(f"""
all:
  vars:
    hanode_cluster_name: scratch
    hanode_vips:
      - {{address: 192.0.2.50/24, interface: hn0test}}
    hanode_shares:
      - {{name: projects, path: /srv/hanode/projects, comment: 'Project "files"', continuous_availability: true}}
      - {{name: scans, path: /srv/hanode/scans, users: [alice], read_only: true}}
    hanode_smb_users:
      - {{name: alice, password: only-used-where-systemd-runs}}
  children:
    etcd:
      hosts:
        {HOST}: &local
          ansible_connection: local
          ansible_python_interpreter: {NODE_PYTHON}
          ansible_host: 127.0.0.1
          hanode_root: {root}
          hanode_controller_dir: {controller}
          hanode_create_user: false
          hanode_user: root
          hanode_group: root
          hanode_smb_workers: 3
          hanode_health: {{hold_down: 20, worker: {{interval: 2, timeout: 2, fall: 3}}}}
          hanode_health_checks:
            - {{name: always, command: [/bin/true], interval: 3}}
          etcd_client_port: {client_port}
          etcd_peer_port: {peer_port}
          etcd_metrics_url: {metrics_url}
    hanode:
      hosts:
        {HOST}: *local
""")
    cmd = [ansible.tool("ansible-playbook"), "-i", str(inventory), "site.yml"]
    first = run(cmd)
    second = run(cmd)
    return Install(ansible, root, controller, inventory, first, second, client_port, metrics_url)


def test_real_run_into_a_scratch_root(install):
    ok, changed, unreachable, failed = recap(install.first)[HOST]
    assert changed > 10 and (unreachable, failed) == (0, 0)
    assert "hanode-agent.service is installed and enabled, and not started: " \
           f"this is a scratch install under {install.root}" in install.first
    assert "etcd.service is installed but not enabled" in install.first
    # the virtualenv, from the wheel built out of this checkout
    version = subprocess.run([install.root / "opt/hanode/venv/bin/python", "-c",
                              "import hanode.metrics, importlib.metadata as m;"
                              "print(hanode.metrics.__file__, m.version('hanode'))"],
                             capture_output=True, text=True, check=True,
                             cwd=install.root).stdout
    assert version.startswith(str(install.root / "opt/hanode/venv/lib"))
    assert (install.units / "multi-user.target.wants/hanode-agent.service").is_symlink()
    assert filecmp.cmp(install.units / "hanode-agent.service", UNIT, shallow=False)
    for share in ("projects", "scans"):
        assert (install.root / "srv/hanode" / share).is_dir()


def test_second_run_changes_nothing(install):
    ok, changed, unreachable, failed = recap(install.second)[HOST]
    assert (changed, unreachable, failed) == (0, 0, 0), install.second[-4000:]


def test_rendered_config_passes_config_check(install):
    out = run([str(install.hanode), "config", "check", "--config", str(install.config_file)])
    assert "ok (cluster scratch, node hnlocal, 1 VIP(s), 2 share(s))" in out
    cfg = config.load(install.config_file)
    assert cfg.cluster.etcd == (f"https://127.0.0.1:{install.client_port}",)
    assert cfg.smb.workers == 3
    assert cfg.vips[0].interface == "hn0test"
    assert cfg.share("projects").comment == 'Project "files"'
    assert cfg.share("projects").continuous_availability
    assert not cfg.share("scans").continuous_availability
    assert cfg.share("scans").path == f"{install.root}/srv/hanode/scans"
    assert cfg.share("scans").read_only and cfg.share("scans").users == ("alice",)
    assert cfg.health.hold_down == 20
    assert cfg.cluster.lease_ttl == 1  # group_vars' default
    assert (cfg.health.worker.timeout, cfg.health.worker.fall) == (2, 3)
    assert [(c.name, c.command, c.interval) for c in cfg.health.checks] == \
        [("always", ("/bin/true",), 3)]
    assert oct(install.config_file.stat().st_mode & 0o777) == "0o640"


def test_units_pass_systemd_analyze_verify(install, tmp_path):
    out = run(["systemd-analyze", "verify", str(install.units / "hanode-agent.service")],
              cwd=tmp_path)
    assert out == ""
    # etcd's unit comes with Debian's package; verify it with the rendered drop-in
    shutil.copy("/lib/systemd/system/etcd.service", tmp_path / "etcd.service")
    shutil.copytree(install.units / "etcd.service.d", tmp_path / "etcd.service.d")
    assert run(["systemd-analyze", "verify", str(tmp_path / "etcd.service")], cwd=tmp_path) == ""


def dropin_environment(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return env


def test_rendered_etcd_and_hanode_work_together(install, tmp_path):
    """etcd runs with exactly the flags, certificates and keys the playbook
    wrote; the role's auth tasks set up the users; hanode's rendered config
    then reaches it with its client certificate and password."""
    flags = dropin_environment(install.units / "etcd.service.d/10-hanode.conf")
    assert flags["ETCD_CLIENT_CERT_AUTH"] == "true"
    assert (flags["ETCD_AUTO_COMPACTION_MODE"], flags["ETCD_AUTO_COMPACTION_RETENTION"]) \
        == ("periodic", "1m")
    # etcd runs real time, as the agent does, so a busy machine does not delay keepalives
    dropin = (install.units / "etcd.service.d/10-hanode.conf").read_text().splitlines()
    assert "CPUSchedulingPolicy=rr" in dropin and "CPUSchedulingPriority=10" in dropin
    log = open(tmp_path / "etcd.log", "wb")
    etcd = subprocess.Popen(["etcd"], env={"PATH": "/usr/bin:/bin", **flags},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        embedded_etcd.wait_healthy(install.metrics_url, 15, etcd)
        cfg = config.load(install.config_file)
        store = Store.from_config(cfg.cluster, timeout=3)
        try:
            # Before the role's auth tasks, etcd has no users: a password is refused.
            with pytest.raises(StoreUnavailable):
                store.put(store.key("probe"), 1)
        finally:
            store.close()

        playbook = tmp_path / "auth.yml"
        playbook.write_text("""
- name: Etcd users and auth, as the etcd role sets them up
  hosts: etcd
  gather_facts: false
  tasks:
    - name: Run the role's auth tasks
      ansible.builtin.include_role:
        name: etcd
        tasks_from: auth.yml
""")
        (tmp_path / "group_vars").symlink_to(ANSIBLE / "group_vars")
        env = {"ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")}
        playbook_cmd = [install.ansible.tool("ansible-playbook"), "-i", str(install.inventory),
                        str(playbook)]
        first = run(playbook_cmd, cwd=tmp_path, env=env)
        assert recap(first)[HOST][1] == 1
        again = run(playbook_cmd, cwd=tmp_path, env=env)
        assert recap(again)[HOST][1:] == (0, 0, 0)

        store = Store.from_config(cfg.cluster, timeout=3)
        try:
            # The rendered raft timing lets etcd grant the 1 s lease of hanode_lease_ttl.
            assert store.grant_lease_ttl(1)[1] == 1
            lease = store.grant_lease(5)
            created, term = store.create(store.leader_key, {"node": "hnlocal"}, lease=lease)
            assert created and term > 0
            assert store.get(store.leader_key).value == {"node": "hnlocal"}
            with pytest.raises(StoreUnavailable):  # the role reaches /hanode/ only
                store._call("put", "/not-hanode", "x")

            # The installed CLI, with the rendered config, reads what the rolling
            # restart handler asks it: who leads.
            status = subprocess.run(
                [install.hanode, "status", "--config", str(install.config_file), "--json"],
                capture_output=True, text=True, timeout=60, cwd=tmp_path)
            report = json.loads(status.stdout)
            assert report["leader"]["node"] == "hnlocal" and report["leader"]["term"] == term
            assert report["etcd"]["healthy"] is True, status.stderr
        finally:
            store.close()
    finally:
        embedded_etcd.stop(etcd)
        log.close()
