"""LOCK replay detection (MS-SMB2 3.3.5.14) over real connections: a LOCK
sent again with the same LockSequence is answered with success and not taken
twice, also after a durable handle was reclaimed on a new connection (the
array travels in the durable record).  smbprotocol is the client."""

from __future__ import annotations

import time
import uuid

from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import LockFlags

import durable_client as dc

LOCK_NOT_GRANTED = 0xC0000055
EXCLUSIVE_NOW = (LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
                 | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)


def _lock(op, bucket: int, number: int) -> int:
    """LOCK with LockSequence = bucket << 4 | number (MS-SMB2 2.2.26, as Windows,
    Samba and smbtorture lay it out).  smbprotocol puts its ``lsn`` in the top
    four bits instead, so the whole value goes in as its ``lsi`` (at most 64)."""
    sequence = bucket << 4 | number
    assert sequence <= 64
    try:
        op.lock([dc.lock_element(100, 100, EXCLUSIVE_NOW)], lsi=sequence)
    except SMBResponseException as exc:
        return exc.status
    return 0


def _mount(target, client_guid):
    return dc.mount(target.port, target.user, target.password, target.share_name, client_guid)


def test_a_replayed_lock_is_answered_without_being_taken_again(hanode_server):
    m = _mount(hanode_server, uuid.uuid4())
    try:
        op, _ = dc.open_durable(m, "replay-same.bin", uuid.uuid4())
        assert _lock(op, 1, 1) == 0
        assert _lock(op, 1, 1) == 0          # the replay: success, no second lock
        assert _lock(op, 1, 2) == LOCK_NOT_GRANTED  # a new request conflicts
        assert _lock(op, 1, 2) == LOCK_NOT_GRANTED  # failed: not stored
        assert _lock(op, 0, 1) == LOCK_NOT_GRANTED  # bucket 0 is never checked
        op.close()
    finally:
        m.conn.disconnect()


def test_a_plain_open_checks_lock_sequences_where_multichannel_is_offered(hanode_server):
    """3.x with SMB2_GLOBAL_CAP_MULTI_CHANNEL: a LOCK may come again on another
    channel, so every open verifies (3.3.5.14), not only durable ones."""
    m = _mount(hanode_server, uuid.uuid4())
    try:
        assert m.conn.server_capabilities.has_flag(0x08)  # SMB2_GLOBAL_CAP_MULTI_CHANNEL
        op = dc.Open(m.tree, "replay-plain.bin")
        op.create(dc.ImpersonationLevel.Impersonation, dc.ACCESS,
                  dc.FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.ShareAccess.FILE_SHARE_READ,
                  dc.CreateDisposition.FILE_OVERWRITE_IF,
                  dc.CreateOptions.FILE_NON_DIRECTORY_FILE)
        assert _lock(op, 1, 1) == 0
        assert _lock(op, 1, 1) == 0
        assert _lock(op, 0, 1) == LOCK_NOT_GRANTED
        op.close()
    finally:
        m.conn.disconnect()


def test_the_lock_sequence_survives_a_reconnect(hanode_server):
    client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
    m = _mount(hanode_server, client_guid)
    op, _ = dc.open_durable(m, "replay-reclaim.bin", create_guid)
    assert _lock(op, 3, 7) == 0
    file_id = op.file_id
    m.drop()  # the LOCK's response is "lost" with the connection
    op, m = dc._reclaim_until(hanode_server.port, hanode_server.user, hanode_server.password,
                              hanode_server.share_name, client_guid, file_id, create_guid,
                              time.monotonic() + 30)
    try:
        assert _lock(op, 3, 7) == 0                  # recognised as done
        assert _lock(op, 3, 8) == LOCK_NOT_GRANTED   # and the lock itself is back
        op.close()
    finally:
        m.conn.disconnect()
