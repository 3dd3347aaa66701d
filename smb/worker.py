"""SMB worker processes: ``hanode smb`` starts N of them, each a trio server on
the same (listen, port) with SO_REUSEPORT so the kernel spreads connections
across cores.  ``python -m smb.worker --config FILE --worker-index I`` is one
worker; the parent that starts, restarts and stops them is the agent's
supervisor (hanode.smbnode for ``hanode smb``), which this module does not import.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import time
import uuid
from dataclasses import replace
from typing import Awaitable, Callable, Sequence

import trio

from hanode import config as config_mod
from hanode.config import Config, ConfigError
from hanode.metrics import WorkerMetrics
from hanode.store import Store, StoreUnavailable
from smb import drainctl, probe
from smb.server import handoff
from smb.server.connection import Connection, Limits
from smb.server.durable_life import forget_reclaimed, purged
from smb.server.durable_opens import hold_orphans, keep_caching
from smb.server.userdb import EtcdUsers
from smb.server.workerstate import Hooks, WorkerState

log = logging.getLogger("smb.worker")


def setup_logging(cfg: Config, tag: str) -> None:
    logging.basicConfig(
        level=getattr(logging, cfg.log.level.upper()), stream=sys.stderr,
        format=f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s")


def server_guid(cfg: Config) -> bytes:
    """The same on every worker of a node, so clients see one server."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hanode:{cfg.cluster.name}:{cfg.node.name}").bytes_le


def _listen_socket(cfg: Config) -> trio.socket.SocketType:
    family = socket.AF_INET6 if ":" in cfg.smb.listen else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


async def serve(cfg: Config, index: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """One worker: accept connections until cancelled."""
    store = Store.from_config(cfg.cluster)
    users = EtcdUsers(store)
    guid = server_guid(cfg)
    state = WorkerState(cfg, index, store, Hooks(purged=purged, forget_reclaimed=forget_reclaimed,
                                                 caching_changed=keep_caching,
                                                 orphans_loaded=hold_orphans))
    metrics = WorkerMetrics()
    drains = drainctl.Drains()
    limits = Limits(max_credits=cfg.smb.max_credits)
    sock = _listen_socket(cfg)
    await sock.bind((cfg.smb.listen, cfg.smb.port))

    async def handle(stream: trio.SocketStream, received: bytes = b"") -> None:
        """Serve one connection: accepted here, or handed over by another worker
        with the bytes it ``received`` (that worker registered it already)."""
        try:
            peer = stream.socket.getpeername()[:2]
            local = stream.socket.getsockname()[:2]
        except OSError:
            await stream.aclose()
            return
        if state.connections >= cfg.smb.max_connections_per_worker:
            log.warning("refusing %s: %d connections already", peer[0], state.connections)
            await stream.aclose()
            return
        state.connections += 1
        metrics.connection_opened()
        registered = trio.Event()
        outcome: list[bool] = []

        async def register() -> None:
            try:
                outcome.append(bool(received) or
                               await _register(store, cfg, index, local[0], peer))
            finally:
                registered.set()

        conn = Connection(stream, cfg, users, guid, (peer[0], peer[1]), limits=limits,
                          local_address=(local[0], local[1]), metrics=metrics,
                          received=received, sessions=state.sessions, clients=state.clients)

        try:
            # Registration runs beside the connection, so a client that comes
            # and goes at once frees its slot without waiting for etcd.
            async with trio.open_nursery() as conn_nursery:
                conn_nursery.start_soon(register)
                try:
                    with drains.track(conn):
                        await conn.serve()
                finally:
                    state.connections -= 1
                    metrics.connection_closed()
        except Exception as exc:  # the boundary: the worker lives on
            log_connection_failure(peer[0], exc)
        finally:
            with trio.CancelScope(shield=True):
                await registered.wait()
                # A connection handed to another worker stays registered for it.
                if outcome and outcome[0] and not conn.handed_off:
                    await _unregister(store, local[0], peer)

    try:
        async with trio.open_nursery() as nursery:
            # Liveness first: a worker takes connections once it can grant durability.
            await nursery.start(state.run)
            if cfg.smb.multichannel:
                await nursery.start(handoff.serve, handoff.address(cfg.node.state_dir, index),
                                    handle)
            # Before a planned move, the agent has the connections drained.
            await nursery.start(drainctl.serve, drainctl.address(cfg.node.state_dir, index),
                                drains)
            sock.listen(128)
            listener = trio.SocketListener(sock)
            # The agent's health probe, answered by the same connection code.
            await nursery.start(probe.serve, probe.address(cfg.node.state_dir, index),
                                lambda stream: Connection(stream, cfg, users, guid,
                                                          probe.PEER).serve())
            log.info("worker %d listening on %s:%d", index, cfg.smb.listen, cfg.smb.port)
            task_status.started()
            await trio.serve_listeners(handle, [listener], handler_nursery=nursery)
    finally:
        await trio.to_thread.run_sync(store.close)


def log_connection_failure(peer_ip: str, exc: Exception) -> None:
    """What the worker's boundary logs when a connection ends with an exception
    (a bug, since the connection layer answers bad input itself): one line naming
    the innermost first error, then the traceback, which is what lets anyone fix it."""
    first: BaseException = exc
    while isinstance(first, BaseExceptionGroup) and first.exceptions:
        first = first.exceptions[0]
    log.error("connection from %s failed: %s: %s", peer_ip, type(first).__name__, first,
              exc_info=exc)


async def _register(store, cfg: Config, index: int, local_ip: str,
                    peer: tuple[str, int]) -> bool:
    """Put the connection in the VIP's connection list, for the next holder's tickles.

    Deleted on a clean close only: after a crash the entry is what lets the
    node that takes the address over reset the client's stale connection.
    """
    value = {"node": cfg.node.name, "time": time.time(), "worker": index}
    try:
        await trio.to_thread.run_sync(store.put, store.conn_key(local_ip, peer[0], peer[1]),
                                      value)
        return True
    except StoreUnavailable as exc:
        log.warning("connection from %s not registered: %s", peer[0], exc)
        return False


async def _unregister(store, local_ip: str, peer: tuple[str, int]) -> None:
    try:
        await trio.to_thread.run_sync(store.delete, store.conn_key(local_ip, peer[0], peer[1]))
    except StoreUnavailable as exc:
        log.warning("connection from %s not unregistered: %s", peer[0], exc)


async def until_signalled(stopping: str, run: Callable[..., Awaitable[None]],
                           *args: object) -> None:
    """``run(*args)`` until SIGTERM or SIGINT, then cancelled (logging ``stopping``)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, *args)
            async for _ in signals:
                log.info("%s", stopping)
                nursery.cancel_scope.cancel()
                break


def check_config(cfg: Config) -> None:
    if not cfg.cluster.etcd:
        raise ConfigError(f"{cfg.source}: cluster.etcd: is empty; hanode smb needs etcd "
                          "endpoints (the agent starts an embedded one)")


def worker_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smb.worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--worker-index", type=int, default=0)
    # The agent's embedded etcd (a config without cluster.etcd): its URL.
    parser.add_argument("--etcd", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
        if args.etcd and not cfg.cluster.etcd:
            cfg = replace(cfg, cluster=replace(cfg.cluster, etcd=tuple(args.etcd)))
        check_config(cfg)
    except ConfigError as exc:
        print(f"hanode: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg, f"worker{args.worker_index}")
    try:
        trio.run(until_signalled, f"worker {args.worker_index} stopping", serve, cfg,
                 args.worker_index)
    except OSError as exc:
        log.error("worker %d: %s", args.worker_index, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
