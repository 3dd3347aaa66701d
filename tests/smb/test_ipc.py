"""Samba's RPC clients against hanode's IPC$ and against a private smbd, in the
same test: share browsing (srvsvc), server and workstation info, SID and name
lookups (lsarpc).  What hanode answers must agree with its config; where a
field is the server's own (its name, its version), smbd's answer shows that
the client parsed the same field from both."""

from __future__ import annotations

import random
import re
import subprocess

import pytest

import harness

NETBIOS = "HNIPCTEST"
SHARE_COMMENT = "the test share"
CLUSTER_EXTRA = f'netbios_name = "{NETBIOS}"'


@pytest.fixture(scope="module")
def hanode_ipc(etcd_server, tmp_path_factory):
    """hanode with a commented share, a second share only bob may use, and a
    fixed NetBIOS name."""
    base = tmp_path_factory.mktemp("hanode-ipc")
    private = base / "private"
    private.mkdir()
    with harness.running_hanode(
            etcd_server.url, base / "srv", cluster_extra=CLUSTER_EXTRA,
            share_extra=f'comment = "{SHARE_COMMENT}"',
            extra_shares=f'[[share]]\nname = "bobonly"\npath = "{private}"\nusers = ["bob"]\n'
    ) as target:
        yield target


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def smbclient_list(target: harness.Target, *extra: str) -> subprocess.CompletedProcess:
    return _run(["smbclient", "-p", str(target.port), "-L", "//127.0.0.1",
                 "-U", target.credentials, *extra])


def rpcclient(target: harness.Target, command: str) -> subprocess.CompletedProcess:
    return _run(["rpcclient", "-p", str(target.port), "127.0.0.1", "-U", target.credentials,
                 "-c", command])


def _share_rows(out: str) -> dict[str, tuple[str, str]]:
    """smbclient -L's table: name -> (type, comment)."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\t(\S+)\s+(Disk|IPC|Printer)\s*(.*)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).strip())
    return rows


@pytest.mark.parametrize("extra", [
    ("-m", "SMB2"),
    ("-m", "SMB3", "--client-protection=sign"),
    ("-m", "SMB3", "--client-protection=encrypt"),
], ids=["smb2", "smb3-signed", "smb3-encrypted"])
def test_smbclient_lists_shares(hanode_ipc, smbd_server, extra):
    ours = smbclient_list(hanode_ipc, *extra)
    theirs = smbclient_list(smbd_server, *extra)
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert ours.returncode == 0, ours.stdout + ours.stderr
    rows = _share_rows(ours.stdout)
    # root may not use bob's share, so it is not listed.
    assert rows == {"test": ("Disk", SHARE_COMMENT), "IPC$": ("IPC", "IPC Service (hanode)")}
    smbd_rows = _share_rows(theirs.stdout)
    assert smbd_rows["test"][0] == "Disk" and smbd_rows["IPC$"][0] == "IPC"


def test_rpcclient_srvinfo(hanode_ipc, smbd_server):
    ours = rpcclient(hanode_ipc, "srvinfo")
    theirs = rpcclient(smbd_server, "srvinfo")
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert ours.stdout.split()[0] == NETBIOS
    assert "platform_id     :\t500" in ours.stdout and "platform_id     :\t500" in theirs.stdout
    assert "os version      :\t6.1" in ours.stdout


def test_rpcclient_netshareenumall_and_getinfo(hanode_ipc, smbd_server):
    for level in ("1", "2", "502"):  # the levels rpcclient can display
        ours = rpcclient(hanode_ipc, f"netshareenumall {level}")
        theirs = rpcclient(smbd_server, f"netshareenumall {level}")
        assert theirs.returncode == 0 and ours.returncode == 0, ours.stdout + ours.stderr
        names = re.findall(r"netname:\s*(\S+)", ours.stdout)
        assert names == ["test", "IPC$"], ours.stdout
        assert sorted(re.findall(r"netname:\s*(\S+)", theirs.stdout)) == ["IPC$", "test"]
        if level in ("2", "502"):
            assert f"path:\tC:{hanode_ipc.share}".replace("/", "\\") in ours.stdout, ours.stdout
    ours = rpcclient(hanode_ipc, "netsharegetinfo test 2")
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert f"remark:\t{SHARE_COMMENT}" in ours.stdout, ours.stdout
    missing = rpcclient(hanode_ipc, "netsharegetinfo nosuch 1")
    assert "WERR_INVALID_NAME" in missing.stdout + missing.stderr
def test_rpcclient_lsaquery(hanode_ipc, smbd_server):
    ours = rpcclient(hanode_ipc, "lsaquery")
    theirs = rpcclient(smbd_server, "lsaquery")
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert "Domain Name: WORKGROUP" in ours.stdout and "Domain Name: WORKGROUP" in theirs.stdout
    account = rpcclient(hanode_ipc, "lsaquery 5").stdout
    assert re.search(rf"^Domain Name: {NETBIOS}\nDomain Sid: S-1-5-21-\d+-\d+-\d+$", account,
                     re.M), account
    assert re.search(r"^Domain Sid: S-1-5-21-", rpcclient(smbd_server, "lsaquery 5").stdout, re.M)
    user = rpcclient(hanode_ipc, "getusername")
    assert f"Account Name: root, Authority Name: {NETBIOS}" in user.stdout, user.stdout


def test_rpcclient_lookupnames_and_lookupsids(hanode_ipc, smbd_server):
    for target, domain in ((hanode_ipc, NETBIOS), (smbd_server, None)):
        out = rpcclient(target, "lookupnames root Everyone").stdout
        m = re.search(r"^root (S-1-5-21-[\d-]+) \(User: 1\)$", out, re.M)
        assert m, out
        assert re.search(r"^Everyone S-1-1-0 \(Well-known Group: 5\)$", out, re.M), out
        back = rpcclient(target, f"lookupsids {m.group(1)} S-1-1-0 S-1-5-32-544").stdout
        assert re.search(rf"^{m.group(1)} \S+\\root \(1\)$", back, re.M), back
        assert re.search(r"^S-1-5-32-544 BUILTIN\\Administrators \(4\)$", back, re.M), back
        if domain:
            assert f"{domain}\\root" in back


_TORTURE_RESULT = re.compile(r"^(success|failure|error|skip): (.+?)(?: \[)?$", re.M)
# srvsvc calls outside what hanode serves (issue 15 asks for the share and
# server information calls); smbd passes them, hanode faults them.
SRVSVC_GAPS = {
    "srvsvc (admin access).NetConnEnum": "connection enumeration is not served",
    "srvsvc (admin access).NetFileEnum": "open-file enumeration is not served",
    "srvsvc (admin access).NetSessEnum": "session enumeration is not served",
}


def _torture(target: harness.Target, suite: str, binding: str = "") -> dict[str, str]:
    done = _run(["smbtorture", "-p", str(target.port), f"ncacn_np:127.0.0.1{binding}",
                 "-U", target.credentials, suite], timeout=300)
    return {m.group(2): m.group(1) for m in _TORTURE_RESULT.finditer(done.stdout + done.stderr)}


@pytest.mark.smbtorture
@pytest.mark.parametrize("binding", ["", "[ndr64]"], ids=["ndr", "ndr64"])
@pytest.mark.parametrize("suite, gaps", [
    ("rpc.srvsvc", SRVSVC_GAPS),
    ("rpc.lsa.lookupsids", {}),
    ("rpc.lsa.lookupnames", {}),
    ("rpc.lsa-getuser", {}),
])
def test_smbtorture_rpc_parity(hanode_ipc, smbd_server, suite, gaps, binding):
    """smbd speaks only NDR (it fails every call over NDR64), so hanode's NDR64
    run is held to what smbd passes over NDR."""
    theirs = _torture(smbd_server, suite)
    ours = _torture(hanode_ipc, suite, binding)
    passed = [name for name, outcome in theirs.items() if outcome == "success"]
    assert passed, theirs
    missing = [f"{name}: {ours.get(name, 'missing')}" for name in passed
               if ours.get(name) != "success" and name not in gaps]
    assert not missing, missing


def test_net_rpc_share_list(etcd_server, tmp_path):
    """``net rpc`` ignores -p (Samba 4.17 connects to 445, then 139), so each
    server listens on port 445 of a loopback address of its own (smbd binds
    only to addresses an interface holds: its is added to lo for the test)."""
    base = random.randrange(2, 250)
    smbd_address = f"127.77.{base}.1"
    subprocess.run(["ip", "addr", "add", f"{smbd_address}/32", "dev", "lo"], check=True)
    try:
        smbd = harness.start_smbd(tmp_path / "smbd", listen=smbd_address, port=445)
    except BaseException:
        subprocess.run(["ip", "addr", "del", f"{smbd_address}/32", "dev", "lo"])
        raise
    try:
        with harness.running_hanode(
                etcd_server.url, tmp_path / "hanode", listen=f"127.77.{base}.2", port=445,
                share_extra=f'comment = "{SHARE_COMMENT}"') as ours:
            def shares(target: harness.Target) -> list[str]:
                done = _run(["net", "rpc", "share", "list", "-S", target.host,
                             "-U", target.credentials])
                assert done.returncode == 0, done.stdout + done.stderr
                return done.stdout.split()
            assert shares(ours) == ["test", "IPC$"]
            assert sorted(shares(smbd)) == ["IPC$", "test"]
    finally:
        harness.stop(smbd)
        subprocess.run(["ip", "addr", "del", f"{smbd_address}/32", "dev", "lo"])


def test_share_list_follows_share_users(hanode_ipc):
    """bob may use bobonly and sees it; root does not (test_smbclient_lists_shares)."""
    added = harness.add_user(hanode_ipc.config, "bob", "Bob-pw-1")
    assert added.returncode == 0, added.stderr
    listed = _run(["smbclient", "-p", str(hanode_ipc.port), "-L", "//127.0.0.1",
                   "-U", "bob%Bob-pw-1"])
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert set(_share_rows(listed.stdout)) == {"test", "bobonly", "IPC$"}


def test_anonymous_share_list_only_with_allow_guest(etcd_server, tmp_path, hanode_ipc):
    private = tmp_path / "private"
    private.mkdir()
    restricted = f'[[share]]\nname = "rootonly"\npath = "{private}"\nusers = ["root"]\n'
    with harness.running_hanode(etcd_server.url, tmp_path / "guest", smb_extra="allow_guest = true",
                                extra_shares=restricted) as target:
        listed = _run(["smbclient", "-p", str(target.port), "-L", "//127.0.0.1", "-N"])
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert set(_share_rows(listed.stdout)) == {"test", "IPC$"}
    refused = _run(["smbclient", "-p", str(hanode_ipc.port), "-L", "//127.0.0.1", "-N"])
    assert refused.returncode != 0 and "IPC$" not in refused.stdout  # allow_guest is off
