"""Delete-on-close as MS-FSA defines it (2.1.5.1, 2.1.5.4, 2.1.5.15.3), through
smbprotocol, hanode against a private smbd: FILE_DELETE_ON_CLOSE on a CREATE
takes effect when that handle closes, other opens meanwhile succeed (share
modes permitting); once the delete is pending (that handle closed, or
FileDispositionInformation set) new opens get DELETE_PENDING and the last
close removes the file; the statuses for the refusals (read-only file, no
DELETE access, a directory not empty) are Windows'.  (smbtorture's
smb2.delete-on-close-perms needs NT ACLs for most of its tests: see
test_torture_semantics.py.)"""

from __future__ import annotations

import struct

from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (
    CreateDisposition, Open, SMB2QueryInfoRequest, SMB2QueryInfoResponse,
)

from test_link_parity import (
    DIR, DOC, FILE, READONLY, RW, A, Client, create, dispose, status,
)

FILE_STANDARD = 5


def pending(c: Client, op: Open) -> bool:
    """FileStandardInformation's DeletePending for the handle."""
    req = SMB2QueryInfoRequest()
    req["info_type"] = 1
    req["file_info_class"] = FILE_STANDARD
    req["output_buffer_length"] = 24
    req["file_id"] = op.file_id
    sent = c.conn.send(req, c.session.session_id, c.tree.tree_connect_id)
    resp = SMB2QueryInfoResponse()
    resp.unpack(c.conn.receive(sent)["data"].get_value())
    return bool(struct.unpack_from("<qqIBB", resp["buffer"].get_value())[3])


def closed(op: Open) -> str:
    try:
        op.close()
    except SMBResponseException as exc:
        return f"{exc.status:#x}"
    return "SUCCESS"


def scenario(target) -> list[object]:
    """The same requests against one server; what each got, and the files after."""
    c = Client(target)
    seen: list[object] = []
    try:
        # FILE_DELETE_ON_CLOSE on CREATE: nothing is pending until that handle closes.
        _, a = create(c, "doc", options=FILE | DOC, disposition=CreateDisposition.FILE_CREATE)
        seen.append(("pending while the DOC handle is open", pending(c, a)))
        got, b = create(c, "doc", access=RW)
        seen.append(("second open beside a DOC handle", got))
        seen.append(("third open, also DOC", status(c, "doc", options=FILE | DOC)))
        seen.append(("open not sharing delete", status(c, "doc", share=1 | 2)))
        seen.append(("close of the DOC handle", closed(a)))
        seen.append(("pending once it closed", pending(c, b)))
        seen.append(("open once it closed", status(c, "doc", access=RW)))
        seen.append(("last close", closed(b)))
        seen.append(("open after the last close", status(c, "doc", access=RW,
                                                         disposition=CreateDisposition.FILE_OPEN)))
        # FileDispositionInformation: pending at once, and clearable.
        _, a = create(c, "disp")
        seen.append(("set disposition", dispose(c, a), pending(c, a)))
        seen.append(("open while pending", status(c, "disp", access=RW)))
        seen.append(("clear disposition", dispose(c, a, False), pending(c, a)))
        seen.append(("open once cleared", status(c, "disp", access=RW)))
        seen.append(("close", closed(a)))
        # A DOC handle's own disposition can be cleared: the file then stays.
        _, a = create(c, "docclear", options=FILE | DOC)
        seen.append(("clear on a DOC handle", dispose(c, a, False)))
        closed(a)
        seen.append(("DOC cleared, file left", status(c, "docclear", access=RW,
                                                      disposition=CreateDisposition.FILE_OPEN)))
        # Refusals.
        seen.append(("DOC without DELETE access", status(c, "noaccess", access=RW,
                                                         options=FILE | DOC)))
        _, a = create(c, "noaccess", access=RW)
        seen.append(("disposition without DELETE access", dispose(c, a)))
        closed(a)
        _, a = create(c, "ro", attributes=READONLY, disposition=CreateDisposition.FILE_CREATE)
        closed(a)
        seen.append(("DOC on a read-only file",
                     status(c, "ro", access=A.DELETE | A.FILE_READ_ATTRIBUTES,
                            options=FILE | DOC)))
        _, a = create(c, "ro", access=A.DELETE | A.FILE_READ_ATTRIBUTES)
        seen.append(("disposition on a read-only file", dispose(c, a)))
        closed(a)
        seen.append(("DOC creating a read-only file",
                     status(c, "ronew", options=FILE | DOC, attributes=READONLY,
                            disposition=CreateDisposition.FILE_CREATE)))
        # Directories: not empty is refused when the delete is asked for.
        _, d = create(c, "full", options=DIR, disposition=CreateDisposition.FILE_CREATE)
        closed(d)
        closed(create(c, "full\\child")[1])
        got, d = create(c, "full", options=DIR | DOC)
        seen.append(("DOC on a directory not empty", got))
        if d is not None:
            seen.append(("its close", closed(d)))
        _, other = create(c, "full", options=DIR)
        _, d = create(c, "full", options=DIR | DOC)
        closed(d)
        seen.append(("open after a DOC handle of a full directory closed",
                     status(c, "full", options=DIR)))
        closed(other)
        _, d = create(c, "full", options=DIR)
        seen.append(("disposition on a directory not empty", dispose(c, d)))
        closed(d)
        _, d = create(c, "empty", options=DIR, disposition=CreateDisposition.FILE_CREATE)
        closed(d)
        _, d = create(c, "empty", options=DIR | DOC)
        seen.append(("file created in a DOC directory",
                     status(c, "empty\\late", disposition=CreateDisposition.FILE_CREATE)))
        seen.append(("close of a DOC directory that filled", closed(d)))
        _, d = create(c, "empty2", options=DIR | DOC, disposition=CreateDisposition.FILE_CREATE)
        seen.append(("close of an empty DOC directory", closed(d)))
    finally:
        c.close()
    seen.append(sorted(p.name for p in target.share.iterdir()))
    return seen


def test_delete_on_close_as_on_smbd(hanode_server, smbd_server):
    ours, theirs = scenario(hanode_server), scenario(smbd_server)
    differ = [f"hanode {mine} / smbd {smbds}" for mine, smbds in zip(ours, theirs)
              if mine != smbds]
    assert not differ, "\n".join(differ)
    assert ours[1] == ("second open beside a DOC handle", "SUCCESS")
