"""``hanode user add|del|list``: SMB users, kept in etcd as NT hashes only.

The password is read from standard input (never the command line, where
``ps`` would show it), turned into its NT hash at once, and never printed or
logged.  The NT hash is what NTLM needs; etcd should still be protected, as
the hash is password-equivalent for NTLM.
"""

from __future__ import annotations

import argparse
import re
import sys

from hanode import config as config_mod
from hanode.errors import UserError

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _store(args: argparse.Namespace):
    from hanode.store import Store
    cfg = config_mod.load(args.config or config_mod.DEFAULT_PATH) if (
        args.config or not (args.etcd and args.cluster)) else None
    endpoints = tuple(args.etcd) if args.etcd else (cfg.cluster.etcd if cfg else ())
    if not endpoints:
        raise UserError("no etcd endpoints: give --etcd URL or a config with cluster.etcd")
    cluster = args.cluster or (cfg.cluster.name if cfg else None)
    if cfg is not None:
        return Store.from_config(cfg.cluster, endpoints)
    return Store(endpoints, cluster)


def check_name(name: str) -> str:
    """User names are case-insensitive in SMB, so the store keeps them lower-case."""
    if not _USER_RE.match(name):
        raise UserError(f"{name!r} is not a valid user name (letters, digits, '_', '.', '-')")
    return name.lower()


def read_password(stream) -> str:
    """One line from ``stream`` without its line ending; empty is refused."""
    line = stream.readline()
    password = line[:-1] if line.endswith("\n") else line
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise UserError("empty password refused")
    return password


def main(args: argparse.Namespace) -> int:
    from hanode.store import StoreUnavailable
    from smb.wire.md4 import nt_hash

    name = check_name(args.name) if args.user_verb in ("add", "del") else ""
    password = read_password(sys.stdin) if args.user_verb == "add" else ""
    store = _store(args)
    try:
        if args.user_verb == "add":
            store.put(store.user_key(name), {"nt_hash": nt_hash(password).hex()})
            print(f"user {name} saved")
        elif args.user_verb == "del":
            if not store.delete(store.user_key(name)):
                raise UserError(f"no user {name!r}")
            print(f"user {name} deleted")
        else:
            prefix = store.key("users") + "/"
            for entry in sorted(store.get_prefix(prefix), key=lambda e: e.key):
                print(entry.key[len(prefix):])
    except StoreUnavailable as exc:
        print(f"hanode: etcd unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
