"""The ``hanode`` command: argument parsing and one small function per verb.

Each verb imports the module that owns its work lazily, so ``hanode config
check`` does not pay for trio or gRPC.  Operator mistakes (a bad config, an
unknown node) print one line and exit 2; nothing here lets a traceback out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from hanode import config as config_mod
from hanode.errors import UserError

EXIT_USAGE = 2


def _load(path: str | None) -> config_mod.Config:
    return config_mod.load(path or config_mod.DEFAULT_PATH)


def cmd_agent(args: argparse.Namespace) -> int:
    from hanode import agent
    return agent.main(_load(args.config))


def cmd_smb(args: argparse.Namespace) -> int:
    from hanode import smbnode
    return smbnode.main(_load(args.config))


def cmd_status(args: argparse.Namespace) -> int:
    from hanode import status
    return status.main(args)


def cmd_user(args: argparse.Namespace) -> int:
    from hanode import users
    return users.main(args)


def cmd_switchover(args: argparse.Namespace) -> int:
    from hanode import switchover
    return switchover.main(args)


def cmd_share_init(args: argparse.Namespace) -> int:
    from hanode import share_storage
    return share_storage.main(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from hanode import demo
    return demo.main(args)


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(f"{cfg.source}: ok (cluster {cfg.cluster.name}, node {cfg.node.name}, "
          f"{len(cfg.vips)} VIP(s), {len(cfg.shares)} share(s))")
    return 0


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    """Where to find etcd: a config file, or --etcd/--cluster from any machine."""
    p.add_argument("--config", help=f"config file (default {config_mod.DEFAULT_PATH})")
    p.add_argument("--etcd", action="append", metavar="URL",
                   help="etcd endpoint (repeatable); overrides the config")
    p.add_argument("--cluster", help="cluster name; overrides the config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hanode", description="High-availability SMB file service.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    p = verb("agent", cmd_agent, "run this node's agent (foreground; SIGTERM stops it)")
    p.add_argument("--config", required=True)

    p = verb("smb", cmd_smb, "run only this node's SMB workers (no election, no VIP)")
    p.add_argument("--config", required=True)

    p = verb("status", cmd_status, "the cluster at a glance; exit 1 when degraded")
    _add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--watch", action="store_true", help="redraw every second")

    p = verb("user", cmd_user, "manage SMB users (their NT hashes live in etcd)")
    _add_cluster_args(p)
    user_verbs = p.add_subparsers(dest="user_verb", metavar="ACTION", required=True)
    add = user_verbs.add_parser("add", help="add a user or change its password")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the password from standard input")
    delete = user_verbs.add_parser("del", help="delete a user")
    delete.add_argument("name")
    listing = user_verbs.add_parser("list", help="list users")
    # Also accept --config/--etcd/--cluster after the action (`hanode user add bob
    # --config F`); SUPPRESS keeps these from overwriting values given before it.
    for action in (add, delete, listing):
        action.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        action.add_argument("--etcd", action="append", default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)
        action.add_argument("--cluster", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = verb("switchover", cmd_switchover, "planned move of the VIP to another node")
    _add_cluster_args(p)
    p.add_argument("--to", metavar="NODE", help="target node (default: the healthiest standby)")

    p = verb("share", lambda a: 0, "shares' storage identity")
    share_verbs = p.add_subparsers(dest="share_verb", metavar="ACTION", required=True)
    init = share_verbs.add_parser("init", help="write a share's storage marker (once, on the "
                                               "shared storage) and record its id in etcd")
    init.add_argument("name")
    init.add_argument("--config", help=f"config file (default {config_mod.DEFAULT_PATH})")
    init.add_argument("--force", action="store_true", help="make a new id even if etcd has one")
    init.set_defaults(fn=cmd_share_init)

    p = verb("demo", cmd_demo, "the failover experiment on this machine (network namespaces)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--size", default="256M", help="bytes each client copies (K/M/G suffixes)")
    p.add_argument("--kill", choices=["hard", "graceful", "partition", "switchover", "rolling"], default="hard")
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--logs", metavar="DIR",
                   help="copy the agents', clients' and etcd's logs into DIR at the end")
    p.add_argument("--lease-ttl", type=int, choices=range(1, 61), default=2, metavar="S",
                   help="cluster.lease_ttl of the lab's nodes (1 to 60; default 2)")
    p.add_argument("--reconnect", choices=["eager", "kernel"], default="eager",
                   help="how the clients reconnect: eager (attempts from 50 ms up) or as "
                        "the kernel does (its own SYN retransmission)")

    p = verb("config", lambda a: 0, "configuration tools")
    config_verbs = p.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    check = config_verbs.add_parser("check", help="validate a config without starting anything")
    check.add_argument("--config", required=True)
    check.set_defaults(fn=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (config_mod.ConfigError, UserError) as exc:
        print(f"hanode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
