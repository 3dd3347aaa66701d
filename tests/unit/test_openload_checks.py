"""bench/openload.py's response checks on hand-made CREATE responses: a load
generator that let a wrong answer through would report a failing server as fast."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from openload import (  # noqa: E402
    CLOSE_FILE_ID_AT, NB, OPLOCK_BATCH, OPLOCK_NONE, OpenLoadError, check_create,
    close_template, create_template,
)

FILE_ID = bytes(range(16))


def response(status: int = 0, oplock: int = OPLOCK_BATCH, contexts: list[bytes] = ()) -> bytes:
    header = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 1, status, 5, 1, 1, 0, 7, 0, 1, 1,
                         bytes(16))
    blob = b""
    for i, ctx in enumerate(contexts):
        name_len = len(ctx)
        entry = struct.pack("<IHHHHI", 0, 16, name_len, 0, 0, 0) + ctx
        entry += bytes(-len(entry) % 8)
        if i < len(contexts) - 1:
            entry = struct.pack("<I", len(entry)) + entry[4:]
        blob += entry
    offset = 64 + 88 if blob else 0
    body = struct.pack("<HBBI32sQQII16sII", 89, oplock, 0, 1, bytes(32), 0, 0, 0x80, 0, FILE_ID,
                       offset, len(blob))
    return header + body + blob


def test_a_durable_grant_gives_the_file_id():
    assert check_create(response(contexts=[b"MxAc", b"DH2Q"]), "durable", "x") == FILE_ID


@pytest.mark.parametrize("frame, kind, message", [
    (response(status=0xC0000043), "plain", "status 0xc0000043"),
    (response(oplock=OPLOCK_NONE), "batch", "oplock level 0x00"),
    (response(oplock=0x01, contexts=[b"DH2Q"]), "durable", "oplock level 0x01"),
    (response(contexts=[b"MxAc"]), "durable", "no DH2Q"),
    (response()[:100], "plain", "too short"),
])
def test_a_wrong_answer_is_an_error(frame, kind, message):
    with pytest.raises(OpenLoadError, match=message):
        check_create(frame, kind, "x")


def test_templates_put_guid_and_file_id_where_the_server_reads_them():
    frame, guid_at = create_template("durable", "a.dat", 5, 9, 0)
    message = bytes(frame[NB:])
    assert struct.unpack_from(">I", frame)[0] == len(message)
    name_at, name_len, ctx_at, ctx_len = struct.unpack_from("<HHII", message, 64 + 44)
    assert message[name_at:name_at + name_len].decode("utf-16-le") == "a.dat"
    assert message[ctx_at + 16:ctx_at + 20] == b"DH2Q" and ctx_at % 8 == 0
    assert guid_at == NB + ctx_at + 24 + 16 and ctx_at + ctx_len == len(message)
    plain, no_guid = create_template("plain", "a.dat", 5, 9, 0)
    assert no_guid is None and struct.unpack_from("<II", plain, NB + 64 + 48) == (0, 0)
    close = close_template(5, 9, 0)
    assert len(close) - NB == 64 + 24 and close[CLOSE_FILE_ID_AT:] == bytes(16)
