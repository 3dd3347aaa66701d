"""Compound walking and related-request inheritance (MS-SMB2 3.3.5.2.7), on bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from smb.server.compound import (
    RELATED_SESSION, RELATED_TREE, Chain, elements, request_file_id, resolve,
)
from smb.server.violation import ProtocolViolation
from smb.wire.header import Command, Flags, Header, Status

requests = st.lists(st.tuples(st.sampled_from(list(Command)), st.binary(max_size=40)),
                    min_size=1, max_size=6)


def _compound(parts: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for i, (command, body) in enumerate(parts):
        last = i == len(parts) - 1
        size = 64 + len(body)
        pad = 0 if last else -size % 8
        header = Header(command=command, message_id=i)
        out += header.pack(next_command=0 if last else size + pad) + body + bytes(pad)
    return out


@given(requests)
def test_elements_come_out_as_they_were_compounded(parts):
    got = list(elements(memoryview(_compound(parts))))
    assert [(e.header.command, e.header.message_id) for e in got] == [
        (command, i) for i, (command, _) in enumerate(parts)]
    assert [e.last for e in got] == [False] * (len(parts) - 1) + [True]
    for e, (_, body) in zip(got, parts):
        assert bytes(e.message[64:64 + len(body)]) == body


@pytest.mark.parametrize("next_command", [12, 64 + 4, 4096])
def test_a_bad_next_command_ends_the_connection_after_the_elements_before_it(next_command):
    good = Header(command=Command.ECHO, message_id=0).pack(next_command=72) + bytes(8)
    bad = Header(command=Command.ECHO, message_id=1).pack(next_command=next_command) + bytes(8)
    walk = elements(memoryview(good + bad + bytes(64)))
    assert next(walk).header.message_id == 0
    with pytest.raises(ProtocolViolation, match="NextCommand"):
        next(walk)


def test_a_response_or_junk_ends_the_connection():
    response = Header(command=Command.ECHO, message_id=0, flags=Flags.SERVER_TO_REDIR).pack()
    with pytest.raises(ProtocolViolation, match="response"):
        list(elements(memoryview(response)))
    with pytest.raises(ProtocolViolation):
        list(elements(memoryview(b"\xfeSMB" + bytes(20))))


def _related(**fields) -> Header:
    return Header(command=Command.CLOSE, message_id=1, flags=Flags.RELATED_OPERATIONS,
                  session_id=RELATED_SESSION, tree_id=RELATED_TREE, **fields)


def test_related_request_inherits_session_tree_and_file():
    resolved = resolve(_related(), Chain(5, 6, b"F" * 16))
    assert (resolved.header.session_id, resolved.header.tree_id) == (5, 6)
    assert resolved.file_id == b"F" * 16 and resolved.carry is None


def test_related_request_first_in_its_message_is_refused():
    resolved = resolve(_related(), None)
    assert resolved.refusal == Status.INVALID_PARAMETER
    assert resolved.carry.inherited_status == Status.INVALID_PARAMETER


def test_failed_create_fails_the_related_requests_after_it():
    failed = Chain(5, 6, None, Status.OBJECT_NAME_NOT_FOUND)
    resolved = resolve(_related(), failed)
    assert resolved.refusal == Status.OBJECT_NAME_NOT_FOUND and resolved.carry is failed


def test_unrelated_request_inherits_nothing():
    header = Header(command=Command.CLOSE, message_id=0, session_id=9, tree_id=3)
    resolved = resolve(header, Chain(5, 6, b"F" * 16, Status.ACCESS_DENIED))
    assert resolved.header is header and resolved.file_id is None and resolved.carry is None


def test_request_file_id_stands_in_for_all_ff():
    body = memoryview(bytes(8) + b"\xff" * 16)
    assert request_file_id(Command.CLOSE, body, b"R" * 16) == b"R" * 16
    assert request_file_id(Command.CLOSE, memoryview(bytes(8) + b"X" * 16), b"R" * 16) == b"X" * 16
    assert request_file_id(Command.ECHO, body, b"R" * 16) is None
    assert request_file_id(Command.CLOSE, memoryview(bytes(10)), None) is None
