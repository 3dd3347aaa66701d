"""hanode.volatile_fs.Overlay against a plain model of a file: the layer shows what
was written, and what it syncs turns the backing bytes into exactly that."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hanode.volatile_fs import BLOCK, Overlay

SPAN = 3 * BLOCK + 100

ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, SPAN), st.binary(min_size=1, max_size=BLOCK + 7)),
    st.tuples(st.just("truncate"), st.integers(0, SPAN)),
), max_size=12)


def synced(backing: bytes, overlay: Overlay) -> bytes:
    """The backing file after the layer's sync: truncate to floor, the writes, truncate."""
    out = bytearray(backing[:overlay.floor])
    for offset, data in overlay.writes():
        out[len(out):offset] = bytes(max(0, offset - len(out)))
        out[offset:offset + len(data)] = data
    return bytes(out[:overlay.size]) + bytes(max(0, overlay.size - len(out)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2 * BLOCK + 50), ops)
def test_reads_and_sync_match_the_model(backing, steps):
    model = bytearray(backing)
    overlay = Overlay.over(len(backing))

    def read_at(at: int, n: int) -> bytes:
        return backing[at:at + n]

    for step in steps:
        if step[0] == "write":
            _, offset, data = step
            if offset > len(model):
                model += bytes(offset - len(model))
            model[offset:offset + len(data)] = data
            overlay.write(offset, data, read_at)
        else:
            _, length = step
            model = model[:length] + bytes(max(0, length - len(model)))
            overlay.truncate(length)
        assert overlay.size == len(model)
        assert overlay.read(0, SPAN + 2 * BLOCK, read_at) == bytes(model)
    assert overlay.read(5, 10, read_at) == bytes(model[5:15])
    assert synced(backing, overlay) == bytes(model)


def test_a_truncated_tail_reads_as_zeros_after_growing_again():
    backing = b"a" * 100
    overlay = Overlay.over(len(backing))
    overlay.truncate(10)
    overlay.write(50, b"z", lambda at, n: backing[at:at + n])
    assert overlay.read(0, 100, lambda at, n: backing[at:at + n]) == b"a" * 10 + bytes(40) + b"z"
