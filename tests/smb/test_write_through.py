"""Acknowledged writes and stable storage, through hanode.volatile_fs (a node's page
cache that dies with the node): ``hanode smb`` serves a plain and a continuously
available share from the layer's mount, smbprotocol writes, closes and logs off,
then the layer is killed.  On the CA share every acknowledged write survives; on
the plain share only what the client asked to be written through (per write or
per open) or FLUSHed survives, and a plain write is lost."""

from __future__ import annotations

import os
import uuid

import pytest
import smbclient
from smbprotocol.connection import Connection
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import harness
from hanode.lab import start_volatile_fs, stop_volatile_fs

DATA = os.urandom(200_000)


@pytest.fixture
def layered(etcd_server, tmp_path):
    """(server, backing): shares ``test`` (plain) and ``ca`` on one volatile layer."""
    backing, mnt = tmp_path / "backing", tmp_path / "mnt"
    for d in (backing / "plain", backing / "ca", mnt):
        d.mkdir(parents=True)
    layer = start_volatile_fs(backing, mnt, tmp_path / "layer.log")
    try:
        with harness.running_hanode(
                etcd_server.url, tmp_path / "hanode", share=mnt / "plain",
                extra_shares=f'[[share]]\nname = "ca"\npath = "{mnt / "ca"}"\n'
                             f"continuous_availability = true\n") as server:
            yield server, backing, lambda: stop_volatile_fs(layer, mnt)
    finally:
        stop_volatile_fs(layer, mnt)


def write_file(server, share: str, name: str, *, write_through=False, option=0,
               flush=False) -> None:
    conn = Connection(uuid.uuid4(), server.host, server.port)
    conn.connect()
    try:
        session = Session(conn, server.user, server.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, rf"\\{server.host}\{share}")
        tree.connect()
        f = Open(tree, name)
        f.create(ImpersonationLevel.Impersonation,
                 FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                 FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                 CreateDisposition.FILE_OVERWRITE_IF,
                 CreateOptions.FILE_NON_DIRECTORY_FILE | option)
        for offset in range(0, len(DATA), 65536):
            assert f.write(DATA[offset:offset + 65536], offset,
                           write_through=write_through) == len(DATA[offset:offset + 65536])
        if flush:
            f.flush()
        f.close()
        tree.disconnect()
        session.disconnect()
    finally:
        conn.disconnect()


def server_side_copy(server, share: str, src: str, dst: str) -> None:
    """FSCTL_SRV_COPYCHUNK_WRITE, through smbprotocol's copyfile."""
    cache: dict = {}
    kw = {"port": server.port, "connection_cache": cache}
    smbclient.register_session(server.host, username=server.user, password=server.password,
                               **kw)
    try:
        unc = rf"\\{server.host}\{share}"
        smbclient.copyfile(rf"{unc}\{src}", rf"{unc}\{dst}", **kw)
    finally:
        smbclient.reset_connection_cache(connection_cache=cache)


def set_end_of_file(server, share: str, name: str, size: int) -> None:
    """SET_INFO FileEndOfFileInformation, through smbprotocol's truncate."""
    cache: dict = {}
    kw = {"port": server.port, "connection_cache": cache}
    smbclient.register_session(server.host, username=server.user, password=server.password,
                               **kw)
    try:
        smbclient.truncate(rf"\\{server.host}\{share}\{name}", size, **kw)
    finally:
        smbclient.reset_connection_cache(connection_cache=cache)


def test_what_survives_the_death_of_the_nodes_page_cache(layered):
    server, backing, kill = layered
    write_file(server, "ca", "ca.bin")
    server_side_copy(server, "ca", "ca.bin", "ca-copy.bin")
    write_file(server, "ca", "cut.bin")
    set_end_of_file(server, "ca", "cut.bin", 1000)
    write_file(server, "test", "plain.bin")
    write_file(server, "test", "flag.bin", write_through=True)
    write_file(server, "test", "option.bin", option=CreateOptions.FILE_WRITE_THROUGH)
    write_file(server, "test", "flushed.bin", flush=True)
    kill()
    assert (backing / "ca" / "ca.bin").read_bytes() == DATA
    assert (backing / "ca" / "ca-copy.bin").read_bytes() == DATA
    assert (backing / "ca" / "cut.bin").read_bytes() == DATA[:1000]
    assert (backing / "plain" / "flag.bin").read_bytes() == DATA
    assert (backing / "plain" / "option.bin").read_bytes() == DATA
    assert (backing / "plain" / "flushed.bin").read_bytes() == DATA
    # Acknowledged, closed, and still lost: what a plain share promises.
    assert (backing / "plain" / "plain.bin").read_bytes() == b""
