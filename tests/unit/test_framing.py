"""Direct-TCP framing on bytes: however the stream is cut into receives, the
same messages come out; a bad or oversized prefix is a protocol violation
before anything is allocated for the message."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from smb.server.framing import FrameBuffer, frame_prefix, message_length
from smb.server.violation import ProtocolViolation

messages = st.lists(st.binary(min_size=4, max_size=300), max_size=8)


@given(messages, st.lists(st.integers(min_value=1, max_value=50), min_size=1))
def test_any_cut_of_the_stream_gives_the_same_messages(sent, cuts):
    stream = b"".join(frame_prefix(len(m)) + m for m in sent)
    frames = FrameBuffer(max_frame=300)
    got, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        frames.receive_data(stream[pos:pos + step])
        pos, i = pos + step, i + 1
        while (message := frames.next_message()) is not None:
            got.append(bytes(message))
    assert got == sent
    assert len(frames) == 0


@given(st.binary(min_size=4, max_size=64), st.integers(min_value=0, max_value=63))
def test_a_pending_message_is_taken_into_a_buffer_of_its_own(message, buffered):
    buffered = min(buffered, len(message))
    frames = FrameBuffer(frame_prefix(len(message)) + message[:buffered], max_frame=64)
    assert frames.pending() == len(message)
    into = memoryview(bytearray(len(message)))
    have = frames.take(into)
    assert have == buffered and bytes(into[:have]) == message[:buffered]
    assert len(frames) == 0


def test_received_before_the_handover_comes_first():
    frames = FrameBuffer(frame_prefix(4) + b"\xfeSMB" + frame_prefix(4), max_frame=64)
    assert frames.next_message() == b"\xfeSMB"
    assert frames.next_message() is None
    assert frames.leftover() == frame_prefix(4)


@pytest.mark.parametrize("prefix, reason", [
    (b"\x85\x00\x00\x04", "not a direct-TCP frame"),  # a NetBIOS keep-alive or junk
    (b"\x00\x00\x00\x03", "frame too short"),
    (b"\x00\x01\x00\x01", "exceeds"),
])
def test_bad_prefixes_end_the_connection(prefix, reason):
    with pytest.raises(ProtocolViolation, match=reason):
        message_length(prefix, max_frame=65536)
    frames = FrameBuffer(prefix, max_frame=65536)
    with pytest.raises(ProtocolViolation, match=reason):
        frames.next_message()
