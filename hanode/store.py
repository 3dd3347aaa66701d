"""The only module that talks to etcd: key layout, leases, transactions.

Every method here blocks (the etcd3 client is gRPC and synchronous); trio
code calls them through ``trio.to_thread.run_sync``.  Every etcd failure
surfaces as :class:`StoreUnavailable`, so callers handle one exception
and never see gRPC's.

Key layout under ``/hanode/<cluster>/``:

    leader                          JSON {"node", "since"}; on the leader's lease;
                                    its create revision is the term
    nodes/<node>                    JSON node record; on the node's lease
    members/<node>                  JSON {"first_seen", "last_seen"}; no lease, so a
                                    node whose record expired shows as down
    conns/<vip>/<client-ip>:<port>  JSON {"node", "time"}; no lease (outlives its writer)
    durable/<persistent-id>         JSON durable-handle record
    workers/<node>/<worker>         worker liveness; on the worker's lease
    users/<name>                    JSON {"nt_hash"}; never the password
    switchover                      JSON {"to", "from", "time"}; a planned move request
    handoff/<vip>                   JSON {"node", "time", "clients": [[ip, port], ...]}: the
                                    clients a leader served when it let go (planned move);
                                    no lease, the successor tickles them and deletes it
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass
from collections.abc import Iterator, Sequence
from typing import Any, Callable
from urllib.parse import urlparse

# etcd3 0.12 ships protobuf modules generated for protobuf 3; pyproject pins
# protobuf<4.  Should a newer protobuf be installed anyway, its pure-Python
# mode still loads them.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import etcd3  # noqa: E402
import etcd3.exceptions  # noqa: E402
import etcd3.utils  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402
from etcd3.etcdrpc import kv_pb2  # noqa: E402
import grpc  # noqa: E402

from hanode.config import ClusterConfig  # noqa: E402

DEFAULT_TIMEOUT = 1.0


class StoreUnavailable(Exception):
    """etcd could not be reached, or did not answer in time."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: Any  # decoded JSON
    create_revision: int
    mod_revision: int
    lease: int


def _translate(exc: BaseException) -> StoreUnavailable:
    if isinstance(exc, grpc.RpcError):
        return StoreUnavailable(f"etcd error: {exc.code().name}")  # type: ignore[attr-defined]
    return StoreUnavailable(str(exc) or type(exc).__name__)


_TRANSIENT = (etcd3.exceptions.Etcd3Exception, grpc.RpcError, ValueError, OSError)


# -- etcd's TxnRequest, encoded by hand ----------------------------------------
# Only what apply() sends: RequestOps in ``success`` (TxnRequest field 2), each
# a PutRequest (RequestOp field 2: key 1, value 2) or a DeleteRangeRequest of
# one key (RequestOp field 3: key 1).  Every field is length-delimited.

def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def txn_request(puts: Sequence[tuple[bytes, bytes]], deletes: Sequence[bytes]) -> bytes:
    """The protobuf bytes of an etcd TxnRequest (no compares) putting and deleting keys."""
    # proto3 leaves an empty value out, as etcd3's own encoding does
    ops = [_field(2, _field(2, _field(1, k) + (_field(2, v) if v else b""))) for k, v in puts]
    ops += [_field(2, _field(3, _field(1, k))) for k in deletes]
    return b"".join(ops)


@dataclass(frozen=True)
class Change:
    """One change seen by a watch: a key put (its decoded value) or deleted."""

    key: str
    value: Any  # decoded JSON; None for a delete
    deleted: bool


class Store:
    """A handle on one cluster's keys in etcd, failing over between endpoints."""

    def __init__(
        self,
        endpoints: list[str] | tuple[str, ...],
        cluster: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        user: str | None = None,
        password: str | None = None,
    ):
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = tuple(endpoints)
        self.cluster = cluster
        self.prefix = f"/hanode/{cluster}/"
        self.timeout = timeout
        self._tls = (ca_file, cert_file, key_file)
        self._auth = (user, password)
        self._clients: dict[str, etcd3.Etcd3Client] = {}
        self._current = 0
        self._lock = threading.Lock()
        # Called with the seconds each request took, failed ones included
        # (the agent feeds its etcd latency histogram with it).
        self.on_request: Callable[[float], None] | None = None

    @classmethod
    def from_config(cls, cluster: ClusterConfig, endpoints: tuple[str, ...] | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> "Store":
        return cls(endpoints or cluster.etcd, cluster.name, timeout=timeout,
                   ca_file=cluster.ca_file, cert_file=cluster.cert_file,
                   key_file=cluster.key_file, user=cluster.user, password=cluster.password)

    # -- keys ---------------------------------------------------------------

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    @property
    def leader_key(self) -> str:
        return self.key("leader")

    def node_key(self, node: str) -> str:
        return self.key("nodes", node)

    def member_key(self, node: str) -> str:
        return self.key("members", node)

    def conn_prefix(self, vip: str) -> str:
        return self.key("conns", vip) + "/"

    def conn_key(self, vip: str, client_ip: str, client_port: int) -> str:
        return self.conn_prefix(vip) + f"{client_ip}:{client_port}"

    @staticmethod
    def parse_conn_key(key: str) -> tuple[str, int]:
        """The (client ip, client port) at the end of a connection key."""
        ip, _, port = key.rsplit("/", 1)[1].rpartition(":")
        return ip, int(port)

    def handoff_key(self, vip: str) -> str:
        return self.key("handoff", vip)

    def durable_key(self, persistent_id: int) -> str:
        return self.key("durable", f"{persistent_id:016x}")

    def worker_key(self, node: str, worker: str) -> str:
        return self.key("workers", node, worker)

    def user_key(self, name: str) -> str:
        return self.key("users", name)

    @property
    def switchover_key(self) -> str:
        return self.key("switchover")

    # -- connection handling -------------------------------------------------

    def _client(self, endpoint: str) -> etcd3.Etcd3Client:
        """The endpoint's client, made on first use.  Made outside the lock (with
        a user it authenticates, a network round trip); of two threads that made
        one at once, the first to store it wins and the other closes its own."""
        with self._lock:
            client = self._clients.get(endpoint)
        if client is not None:
            return client
        url = urlparse(endpoint)
        ca, cert, key = self._tls
        user, password = self._auth
        made = etcd3.client(
            host=url.hostname, port=url.port or 2379, timeout=self.timeout,
            ca_cert=ca if url.scheme == "https" or ca else None,
            cert_cert=cert, cert_key=key, user=user, password=password,
        )
        with self._lock:
            client = self._clients.setdefault(endpoint, made)
        if client is not made:
            made.close()
        return client

    def _call(self, fn_name: str | Callable[[etcd3.Etcd3Client], Any], *args: Any,
              stream: bool = False, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return self._call_endpoints(fn_name, *args, stream=stream, **kwargs)
        finally:
            if self.on_request is not None:
                self.on_request(time.monotonic() - start)

    def _call_endpoints(self, fn_name: str | Callable[[etcd3.Etcd3Client], Any], *args: Any,
                        stream: bool = False, **kwargs: Any) -> Any:
        """Run one etcd3 client method (by name, or a function of the client), trying
        each endpoint once.

        stream: the method returns a generator; drain it here, inside the
        error handling, and return a list.
        """
        last: BaseException | None = None
        n = len(self.endpoints)
        for attempt in range(n):
            with self._lock:
                index = (self._current + attempt) % n
                endpoint = self.endpoints[index]
            try:
                client = self._client(endpoint)
                method = getattr(client, fn_name) if isinstance(fn_name, str) \
                    else functools.partial(fn_name, client)
                result = method(*args, **kwargs)
                if stream:
                    result = list(result)
                if attempt:
                    with self._lock:
                        self._current = index
                return result
            except _TRANSIENT as exc:
                last = exc
                with self._lock:
                    stale = self._clients.pop(endpoint, None)
                if stale is not None:
                    stale.close()
        assert last is not None
        raise _translate(last) from None

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- plain keys ----------------------------------------------------------

    @staticmethod
    def _entry(value: bytes, meta: Any) -> Entry:
        try:
            decoded = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            decoded = None
        return Entry(key=meta.key.decode(), value=decoded,
                     create_revision=meta.create_revision,
                     mod_revision=meta.mod_revision, lease=meta.lease_id)

    def get(self, key: str) -> Entry | None:
        value, meta = self._call("get", key)
        return None if meta is None else self._entry(value, meta)

    def get_prefix(self, prefix: str) -> list[Entry]:
        return [self._entry(v, m) for v, m in self._call("get_prefix", prefix)]

    def get_many(self, keys: Sequence[str]) -> list[Entry]:
        """The entries of those of ``keys`` that exist: one transaction (one round
        trip, one revision) per MAX_TXN_OPS keys, instead of one get per key."""
        found: list[Entry] = []
        for start in range(0, len(keys), self.MAX_TXN_OPS):
            gets = [etcd3.transactions.Get(k) for k in keys[start:start + self.MAX_TXN_OPS]]
            _, ranges = self._call("transaction", compare=[], success=gets, failure=[])
            for ranged in ranges:
                found.extend(self._entry(v, m) for v, m in ranged)
        return found

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with prefix, counted by etcd (no keys or values sent)."""
        return int(self._call("get_prefix_response", prefix, count_only=True).count)

    def put(self, key: str, value: Any, lease: int | None = None) -> None:
        self._call("put", key, json.dumps(value, separators=(",", ":")), lease=lease)

    def delete(self, key: str) -> bool:
        return bool(self._call("delete", key))

    def delete_prefix(self, prefix: str) -> None:
        self._call("delete_prefix", prefix)

    def watch_prefix(self, prefix: str) -> tuple[Iterator[Change], Callable[[], None]]:
        """The changes under prefix from the moment this returns (etcd has
        registered the watch), as a blocking iterator, and the function that
        ends it quietly (from any thread).  The iterator raises
        StoreUnavailable when the watch breaks (its endpoint went away, or etcd
        cancelled it); the caller re-reads what it follows and watches again.

        One gRPC stream of its own, not etcd3's shared watcher thread (which
        dies with a traceback when its channel is closed under it)."""
        stop = threading.Event()
        key = prefix.encode()

        def requests() -> Iterator[Any]:
            yield etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                key=key, range_end=etcd3.utils.increment_last_byte(key)))
            stop.wait()  # the stream stays open until cancelled

        def open_stream(client: etcd3.Etcd3Client) -> Any:
            stream = etcdrpc.WatchStub(client.channel).Watch(
                requests(), credentials=client.call_credentials, metadata=client.metadata)
            created = next(stream)
            if not created.created or created.canceled:
                stream.cancel()
                raise etcd3.exceptions.Etcd3Exception(f"watch of {prefix} not created")
            return stream

        stream = self._call(open_stream)

        def cancel() -> None:
            stop.set()
            stream.cancel()

        def changes() -> Iterator[Change]:
            try:
                for response in stream:
                    if response.canceled:
                        raise etcd3.exceptions.Etcd3Exception(
                            f"watch of {prefix} cancelled by etcd: {response.cancel_reason}")
                    for event in response.events:
                        deleted = event.type == kv_pb2.Event.DELETE
                        value = None
                        if not deleted:
                            try:
                                value = json.loads(event.kv.value)
                            except (ValueError, UnicodeDecodeError):
                                pass
                        yield Change(event.kv.key.decode(), value, deleted)
            except _TRANSIENT as exc:
                if not stop.is_set():
                    raise _translate(exc) from None
            if not stop.is_set():  # the stream ended without our cancel
                raise StoreUnavailable(f"watch of {prefix} ended")

        return changes(), cancel

    def create(self, key: str, value: Any, lease: int | None = None) -> tuple[bool, int]:
        """Create key only if absent; returns (created, create revision of the key now)."""
        txn = self._call(
            "transaction",
            compare=[etcd3.transactions.Create(key) == 0],
            success=[etcd3.transactions.Put(
                key, json.dumps(value, separators=(",", ":")), lease=lease)],
            failure=[etcd3.transactions.Get(key)],
        )
        succeeded, responses = txn
        if succeeded:
            entry = self.get(key)
            return True, entry.create_revision if entry else 0
        kvs = responses[0] if responses else []
        return False, (kvs[0][1].create_revision if kvs else 0)

    def delete_if_created(self, key: str, create_revision: int) -> bool:
        """Delete key only if it is still the incarnation created at create_revision."""
        succeeded, _ = self._call(
            "transaction",
            compare=[etcd3.transactions.Create(key) == create_revision],
            success=[etcd3.transactions.Delete(key)],
            failure=[],
        )
        return bool(succeeded)

    # etcd's default --max-txn-ops; callers batching writes stay under it.
    MAX_TXN_OPS = 128

    def apply(self, puts: Sequence[tuple[str, Any]], deletes: Sequence[str] = ()) -> None:
        """Write many keys and delete others in one transaction: all or nothing.

        One round trip (and one fsync on the etcd side) for the whole batch is
        what lets a writer acknowledge thousands of records a second.  Keys
        must be distinct and at most MAX_TXN_OPS in all.  The request is
        encoded here and sent as bytes (see txn_request): the durable-grant
        path calls this for every batch, and building it from etcd3's
        pure-Python protobuf messages cost about as much CPU as the call.
        """
        if len(puts) + len(deletes) > self.MAX_TXN_OPS:
            raise ValueError(f"{len(puts) + len(deletes)} operations in one transaction "
                             f"(max {self.MAX_TXN_OPS})")
        if not puts and not deletes:
            return
        request = txn_request(
            [(k.encode(), json.dumps(v, separators=(",", ":")).encode()) for k, v in puts],
            [k.encode() for k in deletes])

        def send(client: etcd3.Etcd3Client) -> None:
            # No serializers: the request is bytes, the answer (the new revision,
            # which nobody here needs) stays bytes.
            client.channel.unary_unary("/etcdserverpb.KV/Txn")(
                request, timeout=self.timeout, credentials=client.call_credentials,
                metadata=client.metadata)

        self._call(send)

    def replace_if(self, key: str, mod_revision: int, value: Any | None) -> bool:
        """Put value (or delete the key, for None) only if the key is still at mod_revision.

        The compare-and-swap for records several parties may change at once,
        e.g. a reconnecting worker adopting a durable handle while the
        scavenger expires it: exactly one of them wins.
        """
        op = (etcd3.transactions.Delete(key) if value is None else
              etcd3.transactions.Put(key, json.dumps(value, separators=(",", ":"))))
        succeeded, _ = self._call(
            "transaction", compare=[etcd3.transactions.Mod(key) == mod_revision],
            success=[op], failure=[])
        return bool(succeeded)

    # -- leases --------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        return self.grant_lease_ttl(ttl)[0]

    def grant_lease_ttl(self, ttl: int) -> tuple[int, int]:
        """Grant a lease; returns (lease id, the TTL etcd granted).

        etcd raises a TTL below its minimum (1.5 election timeouts, rounded up
        to whole seconds: 2 s with its defaults, 1 s with an election timeout
        of 500 ms) to that minimum without saying so elsewhere.
        """
        lease = self._call("lease", ttl)
        return lease.id, int(lease.ttl)

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease; returns the TTL etcd granted, 0 when the lease is gone."""
        responses = self._call("refresh_lease", lease_id, stream=True)
        return int(responses[0].TTL) if responses else 0

    def lease_ttl_left(self, lease_id: int) -> int:
        """Seconds left on a lease; -1 when it no longer exists."""
        return int(self._call("get_lease_info", lease_id).TTL)

    def revoke_lease(self, lease_id: int) -> None:
        self._call("revoke_lease", lease_id)

    # -- cluster health ------------------------------------------------------

    def endpoint_health(self) -> dict[str, bool]:
        """Ask every endpoint on its own for its status."""
        health = {}
        for endpoint in self.endpoints:
            try:
                self._client(endpoint).status()
                health[endpoint] = True
            except _TRANSIENT:
                with self._lock:
                    stale = self._clients.pop(endpoint, None)
                if stale is not None:
                    stale.close()
                health[endpoint] = False
        return health
