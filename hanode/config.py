"""The node's TOML configuration as frozen dataclasses.

Every key but ``node.name`` has a default.  Validation collects the first
problem as one :class:`ConfigError` whose text names the file, the key and
what is wrong, so ``hanode`` can print it and exit 2 without a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

DEFAULT_PATH = Path("/etc/hanode/hanode.toml")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SHARE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.$-]{0,79}$")
_NETBIOS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def default_fence_margin(lease_ttl: int) -> float:
    """A quarter of the TTL, at most 0.5 s: 0.5 s for the usual 2 s lease, 0.25 s
    for a 1 s one.  The margin covers letting go of the VIP (netlink, a few ms)
    and scheduling delays; the rest of the TTL is the time a keepalive may take
    before the leader fences itself, and a 1 s lease cannot spare 0.5 s of it."""
    return min(0.5, lease_ttl / 4)


class ConfigError(Exception):
    """A configuration problem, already phrased for an operator."""


@dataclass(frozen=True)
class ClusterConfig:
    name: str = "hanode"
    etcd: tuple[str, ...] = ()
    lease_ttl: int = 2
    # Seconds before the lease could expire at which a leader that has heard
    # nothing from etcd lets go of the VIP (self-fencing).  Unset in the file:
    # default_fence_margin(lease_ttl).
    fence_margin: float = 0.5
    announce_refresh: float = 30.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    user: str | None = None
    password: str | None = None
    # The server's name in RPC answers (share browsing, lookups): one name for
    # the whole cluster, since clients reach it through the VIP.  "": derived.
    netbios_name: str = ""
    workgroup: str = "WORKGROUP"

    @property
    def server_name(self) -> str:
        """``netbios_name``, or the cluster name upper-cased and cut to 15 characters."""
        return (self.netbios_name or self.name[:15]).upper()


@dataclass(frozen=True)
class NodeConfig:
    name: str
    # Where the embedded trial etcd keeps its data (used only when cluster.etcd is empty).
    state_dir: str = "/var/lib/hanode"


@dataclass(frozen=True)
class VipConfig:
    address: str  # "10.0.0.50/24" or "fd00::50/64"
    interface: str = "eth0"

    @property
    def interface_address(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(self.address)

    @property
    def ip(self) -> str:
        return str(self.interface_address.ip)

    @property
    def prefixlen(self) -> int:
        return self.interface_address.network.prefixlen

    @property
    def version(self) -> int:
        return self.interface_address.version


@dataclass(frozen=True)
class SmbConfig:
    listen: str = "0.0.0.0"
    port: int = 445
    workers: int = 2  # 0: the agent runs no SMB workers (the service runs elsewhere)
    allow_guest: bool = False
    max_connections_per_worker: int = 1024
    # Offer SMB2_CAP_MULTI_CHANNEL (3.x) and accept session bindings.
    multichannel: bool = True
    # The most credits a client may hold (MS-SMB2 3.3.1.2).  What a client holds
    # is what it may still send once a planned move's drain grants no more, so a
    # lower value lets the drain finish sooner (smb.server.drain).
    max_credits: int = 8192
    # How long a planned move waits for the connections to drain (0: no drain).
    drain_timeout: float = 2.0


@dataclass(frozen=True)
class ShareConfig:
    name: str
    path: str
    comment: str = ""
    read_only: bool = False
    encrypt: bool = False
    # A continuously available share (issue 14): TREE_CONNECT answers with
    # SMB2_SHARE_CAP_CONTINUOUS_AVAILABILITY, persistent handles are granted on it
    # and its writes are acknowledged only once on stable storage.
    continuous_availability: bool = False
    # Empty: every user may connect.
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    address: str = "0.0.0.0"
    port: int = 9464


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class ProbeConfig:
    """How often one kind of health check runs, how long it may take, and how many
    failures in a row make it count as failed."""
    interval: float
    timeout: float
    fall: int


@dataclass(frozen=True)
class CommandCheckConfig:
    """An operator's check (``[[health.check]]``): exit status 0 means healthy."""
    name: str
    command: tuple[str, ...]
    interval: float = 2.0
    timeout: float = 1.0
    fall: int = 2


# The defaults aim at a failure served by another node within 5 s:
# about fall x interval to notice, plus a fraction of a second to hand over.
DEFAULT_PROBES = {
    "worker": ProbeConfig(interval=1.0, timeout=1.0, fall=2),
    "marker": ProbeConfig(interval=1.0, timeout=1.0, fall=1),
    "storage": ProbeConfig(interval=1.0, timeout=1.0, fall=2),
    "link": ProbeConfig(interval=0.5, timeout=0.5, fall=2),
}


@dataclass(frozen=True)
class HealthConfig:
    # Passes in a row a failed check needs before it counts as passing again.
    rise: int = 3
    # A leader hands over for health only after leading this long (anti-flapping).
    hold_down: float = 10.0
    worker: ProbeConfig = DEFAULT_PROBES["worker"]
    marker: ProbeConfig = DEFAULT_PROBES["marker"]
    storage: ProbeConfig = DEFAULT_PROBES["storage"]
    link: ProbeConfig = DEFAULT_PROBES["link"]
    checks: tuple[CommandCheckConfig, ...] = ()


@dataclass(frozen=True)
class Config:
    node: NodeConfig
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    vips: tuple[VipConfig, ...] = ()
    smb: SmbConfig = field(default_factory=SmbConfig)
    shares: tuple[ShareConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    source: str = "<memory>"

    def share(self, name: str) -> ShareConfig | None:
        """Share lookup is case-insensitive, as SMB clients expect."""
        for share in self.shares:
            if share.name.lower() == name.lower():
                return share
        return None


# --------------------------------------------------------------------------
# Validation helpers: each takes (where, value) and returns the clean value.


class _Section:
    """One TOML table being read: remembers which keys were used."""

    def __init__(self, source: str, where: str, raw: Any):
        self.source = source
        self.where = where
        if not isinstance(raw, dict):
            self.fail(where, f"must be a table, not {_kind(raw)}")
        self.raw: dict[str, Any] = raw
        self.used: set[str] = set()

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError(f"{self.source}: {key}: {problem}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}"

    def get(self, name: str, default: Any, check: Callable[[str, Any], Any]) -> Any:
        self.used.add(name)
        if name not in self.raw:
            return default
        return check(self.key(name), self.raw[name])

    def require(self, name: str, check: Callable[[str, Any], Any]) -> Any:
        self.used.add(name)
        if name not in self.raw:
            self.fail(self.key(name), "is required")
        return check(self.key(name), self.raw[name])

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            self.fail(self.key(unknown[0]), "unknown key")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


def _make_checks(source: str):  # noqa: C901 - a flat table of small validators
    def fail(key: str, problem: str):
        raise ConfigError(f"{source}: {key}: {problem}")

    def string(key: str, value: Any) -> str:
        if not isinstance(value, str):
            fail(key, f"must be a string, not {_kind(value)}")
        return value

    def name(key: str, value: Any) -> str:
        value = string(key, value)
        if not _NAME_RE.match(value):
            fail(key, f"{value!r} is not a valid name (letters, digits, '_', '.', '-'; at most 63)")
        return value

    def netbios_name(key: str, value: Any) -> str:
        value = string(key, value)
        if not _NETBIOS_RE.match(value):
            fail(key, f"{value!r} is not a NetBIOS name (letters, digits, '_', '.', '-'; "
                      "at most 15)")
        return value

    def share_name(key: str, value: Any) -> str:
        value = string(key, value)
        if not _SHARE_NAME_RE.match(value):
            fail(key, f"{value!r} is not a valid share name")
        if value.upper() == "IPC$":
            fail(key, "IPC$ is the server's named-pipe share and cannot be configured")
        return value

    def boolean(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            fail(key, f"must be true or false, not {_kind(value)}")
        return value

    def integer(lo: int, hi: int):
        def check(key: str, value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                fail(key, f"must be an integer, not {_kind(value)}")
            if not lo <= value <= hi:
                fail(key, f"{value} is out of range ({lo} to {hi})")
            return value
        return check

    def whole_seconds(lo: int, hi: int):
        """etcd grants leases in whole seconds (LeaseGrantRequest.TTL is an int64)."""
        as_integer = integer(lo, hi)

        def check(key: str, value: Any) -> int:
            if isinstance(value, float):
                fail(key, f"{value} is not whole seconds (etcd grants leases in whole "
                          f"seconds; the shortest is 1, with an etcd tuned for it)")
            return as_integer(key, value)
        return check

    def number(lo: float, hi: float):
        def check(key: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(key, f"must be a number, not {_kind(value)}")
            if not lo <= value <= hi:
                fail(key, f"{value} is out of range ({lo} to {hi})")
            return float(value)
        return check

    def url(key: str, value: Any) -> str:
        value = string(key, value)
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            fail(key, f"{value!r} is not an etcd URL like http://10.0.0.11:2379")
        try:
            parsed.port
        except ValueError:
            fail(key, f"{value!r} has a bad port")
        return value

    def url_list(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            fail(key, f"must be a list of URLs, not {_kind(value)}")
        return tuple(url(f"{key}[{i}]", v) for i, v in enumerate(value))

    def name_list(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            fail(key, f"must be a list of names, not {_kind(value)}")
        return tuple(name(f"{key}[{i}]", v) for i, v in enumerate(value))

    def listen_address(key: str, value: Any) -> str:
        value = string(key, value)
        try:
            ipaddress.ip_address(value)
        except ValueError:
            fail(key, f"{value!r} is not an IP address")
        return value

    def vip_address(key: str, value: Any) -> str:
        value = string(key, value)
        if "/" not in value:
            fail(key, f"{value!r} needs a prefix length, like 10.0.0.50/24")
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            fail(key, f"{value!r} is not an IP address with a prefix length")
        if iface.ip.is_unspecified or iface.ip.is_multicast or iface.ip.is_loopback:
            fail(key, f"{value!r} cannot be a virtual IP")
        return value

    def interface(key: str, value: Any) -> str:
        value = string(key, value)
        if not value or len(value) > 15 or "/" in value or any(c.isspace() for c in value):
            fail(key, f"{value!r} is not a network interface name")
        return value

    def absolute_path(key: str, value: Any) -> str:
        value = string(key, value)
        if not value.startswith("/"):
            fail(key, f"{value!r} must be an absolute path")
        return value

    def log_level(key: str, value: Any) -> str:
        value = string(key, value).lower()
        if value not in ("debug", "info", "warning", "error"):
            fail(key, f"{value!r} is not one of debug, info, warning, error")
        return value

    def command(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            fail(key, f"must be a non-empty list of strings, not {_kind(value)}")
        argv = tuple(string(f"{key}[{i}]", v) for i, v in enumerate(value))
        found = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
        if found is None or not os.path.isfile(found):
            fail(key, f"{argv[0]!r} not found")
        if not os.access(found, os.X_OK):
            fail(key, f"{found!r} is not executable")
        return argv

    return {
        "command": command,
        "string": string, "name": name, "share_name": share_name, "boolean": boolean,
        "netbios_name": netbios_name,
        "integer": integer, "whole_seconds": whole_seconds, "number": number,
        "url_list": url_list, "name_list": name_list,
        "listen_address": listen_address, "vip_address": vip_address,
        "interface": interface, "absolute_path": absolute_path, "log_level": log_level,
    }


def parse(data: dict[str, Any], source: str = "<memory>") -> Config:
    """Validate an already-decoded TOML document."""
    c = _make_checks(source)
    top = _Section(source, "", data)

    def table(name: str) -> _Section:
        top.used.add(name)
        return _Section(source, name, data.get(name, {}))

    def array_of_tables(name: str) -> list[_Section]:
        top.used.add(name)
        raw = data.get(name, [])
        if not isinstance(raw, list):
            top.fail(name, f"must be an array of tables ([[{name}]]), not {_kind(raw)}")
        return [_Section(source, f"{name}[{i}]", item) for i, item in enumerate(raw)]

    s = table("cluster")
    lease_ttl = s.get("lease_ttl", ClusterConfig.lease_ttl, c["whole_seconds"](1, 60))
    cluster = ClusterConfig(
        name=s.get("name", ClusterConfig.name, c["name"]),
        etcd=s.get("etcd", (), c["url_list"]),
        lease_ttl=lease_ttl,
        fence_margin=s.get("fence_margin", default_fence_margin(lease_ttl),
                           c["number"](0.1, 30)),
        announce_refresh=s.get("announce_refresh", ClusterConfig.announce_refresh,
                               c["number"](0, 86400)),
        ca_file=s.get("ca_file", None, c["absolute_path"]),
        cert_file=s.get("cert_file", None, c["absolute_path"]),
        key_file=s.get("key_file", None, c["absolute_path"]),
        user=s.get("user", None, c["string"]),
        password=s.get("password", None, c["string"]),
        netbios_name=s.get("netbios_name", "", c["netbios_name"]),
        workgroup=s.get("workgroup", ClusterConfig.workgroup, c["netbios_name"]),
    )
    s.finish()
    if cluster.fence_margin >= cluster.lease_ttl:
        s.fail("cluster.fence_margin", "must be smaller than cluster.lease_ttl")
    if (cluster.cert_file is None) != (cluster.key_file is None):
        s.fail("cluster.cert_file", "cert_file and key_file go together")
    if (cluster.user is None) != (cluster.password is None):
        s.fail("cluster.user", "user and password go together")

    s = table("node")
    node = NodeConfig(
        name=s.require("name", c["name"]),
        state_dir=s.get("state_dir", NodeConfig.state_dir, c["absolute_path"]),
    )
    s.finish()

    vips = []
    for s in array_of_tables("vip"):
        vips.append(VipConfig(
            address=s.require("address", c["vip_address"]),
            interface=s.get("interface", VipConfig.interface, c["interface"]),
        ))
        s.finish()
    seen_ips = set()
    for i, vip in enumerate(vips):
        if vip.ip in seen_ips:
            top.fail(f"vip[{i}].address", f"{vip.ip} is listed twice")
        seen_ips.add(vip.ip)

    s = table("smb")
    smb = SmbConfig(
        listen=s.get("listen", SmbConfig.listen, c["listen_address"]),
        port=s.get("port", SmbConfig.port, c["integer"](1, 65535)),
        workers=s.get("workers", SmbConfig.workers, c["integer"](0, 256)),
        allow_guest=s.get("allow_guest", SmbConfig.allow_guest, c["boolean"]),
        max_connections_per_worker=s.get(
            "max_connections_per_worker", SmbConfig.max_connections_per_worker,
            c["integer"](1, 1_000_000)),
        multichannel=s.get("multichannel", SmbConfig.multichannel, c["boolean"]),
        max_credits=s.get("max_credits", SmbConfig.max_credits, c["integer"](16, 8192)),
        drain_timeout=s.get("drain_timeout", SmbConfig.drain_timeout, c["number"](0, 4)),
    )
    s.finish()

    shares = []
    for s in array_of_tables("share"):
        shares.append(ShareConfig(
            name=s.require("name", c["share_name"]),
            path=s.require("path", c["absolute_path"]),
            comment=s.get("comment", "", c["string"]),
            read_only=s.get("read_only", False, c["boolean"]),
            encrypt=s.get("encrypt", False, c["boolean"]),
            continuous_availability=s.get("continuous_availability", False, c["boolean"]),
            users=s.get("users", (), c["name_list"]),
        ))
        s.finish()
    seen_shares = set()
    for i, share in enumerate(shares):
        if share.name.lower() in seen_shares:
            top.fail(f"share[{i}].name", f"{share.name!r} is listed twice")
        seen_shares.add(share.name.lower())

    s = table("metrics")
    metrics = MetricsConfig(
        enabled=s.get("enabled", True, c["boolean"]),
        address=s.get("address", MetricsConfig.address, c["listen_address"]),
        port=s.get("port", MetricsConfig.port, c["integer"](1, 65535)),
    )
    s.finish()

    s = table("log")
    log = LogConfig(level=s.get("level", "info", c["log_level"]))
    s.finish()

    health = _health(table("health"), c)

    top.finish()
    return Config(node=node, cluster=cluster, vips=tuple(vips), smb=smb,
                  shares=tuple(shares), metrics=metrics, log=log, health=health,
                  source=source)


def _timing(s: _Section, c: dict[str, Any], default: ProbeConfig | CommandCheckConfig
            ) -> tuple[float, float, int]:
    """interval, timeout and fall of one check; a timeout longer than the interval
    would let rounds pile up."""
    interval = s.get("interval", default.interval, c["number"](0.05, 3600))
    timeout = s.get("timeout", default.timeout, c["number"](0.01, 3600))
    fall = s.get("fall", default.fall, c["integer"](1, 100))
    if timeout > interval:
        s.fail(s.key("timeout"), f"{timeout:g} s is longer than {s.key('interval')} "
                                 f"({interval:g} s)")
    return interval, timeout, fall


def _health(s: _Section, c: dict[str, Any]) -> HealthConfig:
    rise = s.get("rise", HealthConfig.rise, c["integer"](1, 100))
    hold_down = s.get("hold_down", HealthConfig.hold_down, c["number"](0, 86400))
    probes = {}
    for kind, default in DEFAULT_PROBES.items():
        s.used.add(kind)
        sub = _Section(s.source, s.key(kind), s.raw.get(kind, {}))
        probes[kind] = ProbeConfig(*_timing(sub, c, default))
        sub.finish()
    s.used.add("check")
    raw = s.raw.get("check", [])
    if not isinstance(raw, list):
        s.fail(s.key("check"), f"must be an array of tables ([[health.check]]), not {_kind(raw)}")
    checks = []
    for i, item in enumerate(raw):
        sub = _Section(s.source, f"{s.key('check')}[{i}]", item)
        name = sub.require("name", c["name"])
        argv = sub.require("command", c["command"])
        default = CommandCheckConfig(name=name, command=argv)
        interval, timeout, fall = _timing(sub, c, default)
        sub.finish()
        if any(check.name == name for check in checks):
            sub.fail(sub.key("name"), f"{name!r} is listed twice")
        checks.append(CommandCheckConfig(name, argv, interval, timeout, fall))
    s.finish()
    return HealthConfig(rise=rise, hold_down=hold_down, checks=tuple(checks), **probes)


def load(path: str | Path) -> Config:
    """Read and validate a config file; every failure is a ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse(data, source)
