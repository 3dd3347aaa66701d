"""Hard links (SET_INFO FileLinkInformation, MS-FSA 2.1.5.15.7) through
smbprotocol, hanode against a private smbd: the same sequence of requests
must get the same statuses and leave the same files, also where other
handles hold the file or the name a link replaces (share modes, pending
deletes).  (The kernel client's
``ln`` is in tests/kernel.)"""

from __future__ import annotations

import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.file_info import FileLinkInformation, FileStandardInformation
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, ShareAccess, SMB2QueryInfoRequest, SMB2QueryInfoResponse,
    SMB2SetInfoRequest,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

SHARE_ALL = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | \
    ShareAccess.FILE_SHARE_DELETE
ACCESS = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE | \
    FilePipePrinterAccessMask.DELETE


class Client:
    def __init__(self, target) -> None:
        self.conn = Connection(uuid.uuid4(), "127.0.0.1", target.port)
        self.conn.connect()
        self.session = Session(self.conn, target.user, target.password, require_encryption=False)
        self.session.connect()
        self.tree = TreeConnect(self.session, f"\\\\127.0.0.1\\{target.share_name}")
        self.tree.connect()

    def open(self, name: str, *, directory: bool = False, create: bool = True,
             share: int = SHARE_ALL) -> Open:
        op = Open(self.tree, name)
        op.create(ImpersonationLevel.Impersonation, ACCESS,
                  FileAttributes.FILE_ATTRIBUTE_NORMAL, share,
                  CreateDisposition.FILE_OPEN_IF if create else CreateDisposition.FILE_OPEN,
                  CreateOptions.FILE_DIRECTORY_FILE if directory
                  else CreateOptions.FILE_NON_DIRECTORY_FILE)
        return op

    def link(self, op: Open, name: str, replace: bool) -> str:
        info = FileLinkInformation()
        info["replace_if_exists"] = replace
        info["file_name"] = name
        req = SMB2SetInfoRequest()
        req["info_type"] = info.INFO_TYPE
        req["file_info_class"] = info.INFO_CLASS
        req["file_id"] = op.file_id
        req["buffer"] = info
        return self._status(req)

    def links(self, op: Open) -> int:
        req = SMB2QueryInfoRequest()
        req["info_type"] = FileStandardInformation.INFO_TYPE
        req["file_info_class"] = FileStandardInformation.INFO_CLASS
        req["output_buffer_length"] = 1024
        req["file_id"] = op.file_id
        sent = self.conn.send(req, self.session.session_id, self.tree.tree_connect_id)
        resp = SMB2QueryInfoResponse()
        resp.unpack(self.conn.receive(sent)["data"].get_value())
        std = FileStandardInformation()
        std.unpack(resp["buffer"].get_value())
        return std["number_of_links"].get_value()

    def _status(self, req) -> str:
        sent = self.conn.send(req, self.session.session_id, self.tree.tree_connect_id)
        try:
            self.conn.receive(sent)
            return "SUCCESS"
        except SMBResponseException as exc:
            return f"{exc.status:#x}"

    def close(self) -> None:
        self.conn.disconnect(True)


A = FilePipePrinterAccessMask
RW = A.FILE_READ_DATA | A.FILE_WRITE_DATA | A.FILE_READ_ATTRIBUTES
RWD = RW | A.DELETE
DOC = CreateOptions.FILE_DELETE_ON_CLOSE
FILE = CreateOptions.FILE_NON_DIRECTORY_FILE
DIR = CreateOptions.FILE_DIRECTORY_FILE
READONLY = FileAttributes.FILE_ATTRIBUTE_READONLY
FILE_DISPOSITION = 13


def create(c: Client, name: str, *, access: int = RWD, options: int = FILE,
           disposition: int = CreateDisposition.FILE_OPEN_IF, share: int = SHARE_ALL,
           attributes: int = FileAttributes.FILE_ATTRIBUTE_NORMAL) -> tuple[str, Open | None]:
    """(status, the open when it succeeded)."""
    op = Open(c.tree, name)
    try:
        op.create(ImpersonationLevel.Impersonation, access, attributes, share, disposition,
                  options)
    except SMBResponseException as exc:
        return f"{exc.status:#x}", None
    return "SUCCESS", op


def status(c: Client, name: str, **kw) -> str:
    """The status of a CREATE, its handle closed again."""
    got, op = create(c, name, **kw)
    if op is not None:
        op.close()
    return got


def dispose(c: Client, op: Open, delete: bool = True) -> str:
    req = SMB2SetInfoRequest()
    req["info_type"] = 1
    req["file_info_class"] = FILE_DISPOSITION
    req["file_id"] = op.file_id
    req["buffer"] = bytes([int(delete)])
    return c._status(req)



def share_mode_steps(c: Client) -> list[object]:
    """Links and the other opens of the file and of the names involved."""
    seen: list[object] = []
    src = c.open("src")
    c.open("other", share=ShareAccess.FILE_SHARE_READ)  # held, not sharing write or delete
    _, plain = create(c, "src", access=A.FILE_READ_DATA | A.FILE_WRITE_ATTRIBUTES)
    seen.append(("link through a handle without DELETE access", c.link(plain, "s2", False)))
    _, locked = create(c, "src", access=A.FILE_READ_DATA, share=ShareAccess.FILE_SHARE_READ
                       | ShareAccess.FILE_SHARE_WRITE)
    seen.append(("link of a file another handle holds without sharing delete",
                 c.link(src, "s3", False)))
    seen.append(("replace a name held without sharing delete", c.link(src, "other", True)))
    _, victim = create(c, "victim", access=A.DELETE | A.FILE_READ_ATTRIBUTES)
    seen.append(("pending delete of the name to replace", dispose(c, victim)))
    seen.append(("replace a name whose delete is pending", c.link(src, "victim", True)))
    _, pending = create(c, "gone")
    seen.append(("pending delete of the source", dispose(c, pending)))
    seen.append(("link of a file whose delete is pending", c.link(pending, "gone2", False)))
    seen.append(("link to the same name in another case", c.link(src, "SRC", False)))
    return seen


def scenario(target) -> list[object]:
    """The same requests against one server; what each got, and the files after."""
    c = Client(target)
    seen: list[object] = []
    try:
        f = c.open("f")
        f.write(b"data of f", 0)
        c.open("taken").close()
        c.open("held").write(b"held", 0)  # left open: a name someone holds
        c.open("dir", directory=True).close()
        d = c.open("dir2", directory=True)
        seen.append(("link to a new name", c.link(f, "g", False), c.links(f)))
        seen.append(("link to a taken name", c.link(f, "taken", False)))
        seen.append(("replace a taken name", c.link(f, "taken", True), c.links(f)))
        seen.append(("replace a name held open", c.link(f, "held", True)))
        seen.append(("replace a directory", c.link(f, "dir", True)))
        seen.append(("link a directory", c.link(d, "dirlink", False)))
        seen.append(("link into a missing directory", c.link(f, "nodir\\x", False)))
        seen.append(("link to its own name", c.link(f, "f", True)))
        seen.append(("link into a subdirectory", c.link(f, "dir\\f3", False), c.links(f)))
        g = c.open("g", create=False)
        seen.append(("content through the new name", g.read(0, 100)))
        g.write(b"DATA", 0)
        seen.append(("write through one name shows in the other", f.read(0, 100)))
        seen.extend(share_mode_steps(c))
    finally:
        c.close()
    seen.append(sorted(p.name for p in target.share.iterdir()))
    seen.append((target.share / "taken").read_bytes())
    return seen


def test_hard_links_as_on_smbd(hanode_server, smbd_server):
    ours, theirs = scenario(hanode_server), scenario(smbd_server)
    for mine, smbds in zip(ours, theirs):
        assert mine == smbds, f"hanode {mine} / smbd {smbds}"
    assert ours[0] == ("link to a new name", "SUCCESS", 2)
