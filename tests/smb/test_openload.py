"""bench/openload.py, the durable-open bench's load generator, against real servers.

Its rates only mean something if its opens are what it says they are: the
durable ones must be real durable handles (on hanode: in etcd; on both
servers: reclaimable by another client library after the connection is lost),
and a server that answers an error or withholds the oplock must stop the run
with an error, never give a rate.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, RequestedOplockLevel,
)

import durable_client as dc
import harness
from hanode.lab import wait_for
from hanode.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import openload  # noqa: E402
from openload import OpenLoadError, Server  # noqa: E402

STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA


@pytest.fixture
def hanode_cluster(etcd_server, tmp_path):
    """``hanode smb`` with two workers, as the bench runs it, and a Store on
    its cluster's keys."""
    cluster = f"t{uuid.uuid4().hex[:8]}"
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", workers=2,
                                cluster=cluster) as target:
        wait_for(lambda: harness.listening_workers(target) == 2, 15, "two listening workers")
        store = Store([etcd_server.url], cluster)
        try:
            yield target, store
        finally:
            store.delete_prefix(store.prefix)
            store.close()


def _server(target: harness.Target) -> Server:
    return Server(target.port, target.user, target.password, target.share_name, target.name)


def _drop(conn: openload.Conn) -> None:
    """Lose the connection without CLOSE or LOGOFF, as a crashed client does."""
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def _load_then_reclaim(target: harness.Target, sign: bool,
                       stored=None) -> None:
    conns = openload.connect(_server(target), 3, sign=sign)
    try:
        result = openload.drive(conns, "durable", 0.7)
        assert result.opens > 0 and len(result.latencies) == result.opens
        held = conns[0].hold("held.dat")
        if stored is not None:
            stored(held)
        _drop(conns[0])
    finally:
        for conn in conns:
            conn.close()
    # Another client library, a new connection with the same client GUID,
    # gets the handle back with DH2C: the server really kept it durable.
    # (smbprotocol puts a UUID's ``bytes`` on the wire.)
    op, m = dc._reclaim_until(target.port, target.user, target.password, target.share_name,
                              uuid.UUID(bytes=held.client_guid), held.file_id,
                              uuid.UUID(bytes=held.create_guid), time.monotonic() + 20)
    try:
        assert op.file_id[:8] == held.file_id[:8]  # same persistent id, new volatile one
        op.close()
    finally:
        m.conn.disconnect()


@pytest.mark.parametrize("sign", [False, True], ids=["unsigned", "signed"])
def test_hanode_durable_opens_are_stored_and_reclaimable(hanode_cluster, sign):
    target, store = hanode_cluster

    def in_etcd(held: openload.Held) -> None:
        records = store.get_prefix(store.key("durable") + "/")
        assert [r.value["path"] for r in records if r.value["path"] == held.name], \
            [r.value for r in records]

    _load_then_reclaim(target, sign, in_etcd)


@pytest.mark.parametrize("sign", [False, True], ids=["unsigned", "signed"])
def test_smbd_durable_opens_are_reclaimable(smbd_server, sign):
    _load_then_reclaim(smbd_server, sign)


@pytest.fixture(params=["hanode", "smbd"])
def either(request):
    if request.param == "smbd":
        return request.getfixturevalue("smbd_server")
    return request.getfixturevalue("hanode_cluster")[0]


def test_an_error_status_stops_the_run(either):
    # The first connection's file is a directory: its CREATE (a non-directory
    # file) must fail, and that must be the run's outcome.
    (either.share / "openload-0-0-plain.dat").mkdir()
    conns = openload.connect(_server(either), 2)
    try:
        with pytest.raises(OpenLoadError, match=f"status 0x{STATUS_FILE_IS_A_DIRECTORY:08x}"):
            openload.drive(conns, "plain", 0.5)
    finally:
        for conn in conns:
            conn.close()
        (either.share / "openload-0-0-plain.dat").rmdir()


def test_a_withheld_oplock_stops_the_run(either):
    # Another client has the file open (no oplock, sharing everything): no
    # server may grant a batch oplock on it, and the run must say so.
    name = "openload-0-0-batch.dat"
    m = dc.mount(either.port, either.user, either.password, either.share_name, uuid.uuid4())
    try:
        other = Open(m.tree, name)
        other.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                     FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.SHARE_ALL,
                     CreateDisposition.FILE_OPEN_IF,
                     CreateOptions.FILE_NON_DIRECTORY_FILE, None,
                     RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        conns = openload.connect(_server(either), 1)
        try:
            with pytest.raises(OpenLoadError, match="batch oplock asked"):
                openload.drive(conns, "batch", 0.5)
        finally:
            for conn in conns:
                conn.close()
        other.close()
    finally:
        m.conn.disconnect()


def test_a_refused_logon_is_an_error(either):
    wrong = Server(either.port, either.user, either.password + "x", either.share_name,
                   either.name)
    with pytest.raises(OpenLoadError, match="SESSION_SETUP status 0xc000006d"):
        openload.connect(wrong, 1)
