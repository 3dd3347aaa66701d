"""The container image's entry point: check, render the node's config, exec the agent.

``python -m hanode.container agent`` runs under tini (PID 1 of the image,
which forwards SIGTERM to the agent, the graceful stop, and reaps every
orphan).  Before the agent starts it refuses, with one line on stderr and
exit status 2, a container that lacks a capability the agent needs or a
valid config, instead of letting the agent fail later in a netlink call.

A DaemonSet gives every pod the same mounted config, so what differs per
node comes from outside it: ``HANODE_NODE_NAME`` (e.g. the Kubernetes node
name, from the downward API) replaces ``node.name``, and the file named by
``HANODE_ETCD_PASSWORD_FILE`` (a mounted Secret) gives ``cluster.password``.
The merged config is written under /run/hanode, where the agent and its
workers read it.  ``python -m hanode.container render`` does only that, for
one-off commands such as ``hanode user add`` in a Job.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from hanode import config as config_mod

CONFIG = Path(os.environ.get("HANODE_CONFIG", config_mod.DEFAULT_PATH))
RENDERED = Path(os.environ.get("HANODE_RENDERED_CONFIG", "/run/hanode/hanode.toml"))
# Bit numbers in the capability sets (linux/capability.h).
CAPABILITIES = {"NET_ADMIN": 12, "NET_RAW": 13, "NET_BIND_SERVICE": 10}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ContainerError(Exception):
    """Why the container cannot start, in one line."""


def missing_capabilities(status: str) -> list[str]:
    """The capabilities the agent needs that a /proc/<pid>/status text lacks (CapEff)."""
    effective = next((int(line.split()[1], 16) for line in status.splitlines()
                      if line.startswith("CapEff:")), 0)
    return [name for name, bit in CAPABILITIES.items() if not effective >> bit & 1]


def merge(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The config with the node name and etcd password this container was given."""
    merged = {key: dict(value) if isinstance(value, dict) else value
              for key, value in data.items()}

    def table(name: str) -> dict[str, Any]:
        if not isinstance(merged.setdefault(name, {}), dict):
            raise ContainerError(f"{CONFIG}: {name}: must be a table")
        return merged[name]

    if env.get("HANODE_NODE_NAME"):
        table("node")["name"] = env["HANODE_NODE_NAME"]
    if env.get("HANODE_ETCD_PASSWORD_FILE"):
        path = env["HANODE_ETCD_PASSWORD_FILE"]
        try:
            password = Path(path).read_text().strip()
        except OSError as exc:
            raise ContainerError(f"HANODE_ETCD_PASSWORD_FILE {path}: cannot read: "
                                 f"{exc.strerror}") from None
        table("cluster")["password"] = password
    return merged


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ContainerError(f"cannot write a {type(value).__name__} back as TOML")


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps(table: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """TOML for what tomllib read from a config (tables, arrays of tables, plain values)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in table.items()
             if not isinstance(v, dict) and not _is_tables(v)]
    for key, value in table.items():
        header = ".".join(_key(p) for p in (*path, key))
        if isinstance(value, dict):
            lines += ["", f"[{header}]", dumps(value, (*path, key)).rstrip("\n")]
        elif _is_tables(value):
            for item in value:
                lines += ["", f"[[{header}]]", dumps(item, (*path, key)).rstrip("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def render(env: dict[str, str]) -> config_mod.Config:
    """Read the mounted config, merge, validate (errors name the mounted file), write it."""
    if not CONFIG.is_file():
        raise ContainerError(f"no config at {CONFIG}: mount one there (podman -v "
                             f"./hanode.toml:{CONFIG}:ro, or a Kubernetes ConfigMap)")
    try:
        data = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        config_mod.load(CONFIG)  # raises the ConfigError that says what is wrong
        raise ContainerError(f"cannot read {CONFIG}") from None
    merged = merge(data, env)
    cfg = config_mod.parse(merged, str(CONFIG))
    try:
        RENDERED.parent.mkdir(parents=True, exist_ok=True)
        RENDERED.touch(mode=0o600)
        RENDERED.write_text(dumps(merged), encoding="utf-8")
    except OSError as exc:
        raise ContainerError(f"cannot write {RENDERED}: {exc.strerror} "
                             f"(give the container a writable {RENDERED.parent})") from None
    return cfg


def main(argv: list[str]) -> int:
    verb = argv[0] if argv else "agent"
    if verb not in ("agent", "render"):
        print(f"hanode: container: unknown command {verb!r} (agent or render)", file=sys.stderr)
        return 2
    try:
        if verb == "agent":
            missing = missing_capabilities(Path("/proc/self/status").read_text())
            if missing:
                raise ContainerError(
                    f"missing capabilit{'ies' if len(missing) > 1 else 'y'} "
                    f"{', '.join(missing)}: run with --cap-add "
                    f"{','.join(CAPABILITIES)} (Kubernetes: securityContext.capabilities.add)")
        render(dict(os.environ))
    except (ContainerError, config_mod.ConfigError) as exc:
        print(f"hanode: container: {exc}", file=sys.stderr)
        return 2
    if verb == "agent":
        hanode = str(Path(sys.executable).with_name("hanode"))
        os.execv(hanode, [hanode, "agent", "--config", str(RENDERED)])
    print(RENDERED)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
