"""Share-rooted file access that cannot escape the share.

Every name a client sends is split into components and walked one component
at a time from the share's directory file descriptor with ``O_NOFOLLOW``
(``os.open(..., dir_fd=...)``).  No string is ever joined onto the share path
and handed to the kernel, so neither ``..``, an absolute name, nor a symlink
placed inside the share (even one swapped in between lookup and open) can
make the kernel look outside.  Symlinks are refused altogether: following
only the ones that stay inside would need a second resolver, and Samba's
safe default ("wide links = no") refuses the others anyway.

Names are matched the way Windows clients expect on a case-sensitive
filesystem: the exact name first, then a case-folded scan of the directory.

This is the only module that opens files of a share; it raises
:class:`VfsError` carrying the NT status a client should see.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat as stat_mod
import struct
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator

from smb import nowait
from smb.wire import ea as ea_wire
from smb.wire.header import Status

# Characters Windows refuses in a file name (MS-FSCC 2.1.5.2), besides the
# path separator and the stream separator ':' which are handled on their own.
_INVALID_CHARS = frozenset('"*/<>?|') | frozenset(chr(c) for c in range(0x20))
_MAX_COMPONENT_BYTES = 255
_DOS_XATTR = "user.hanode.dos"
# The file's SMB extended attributes, as one FILE_FULL_EA_INFORMATION list.
_EA_XATTR = "user.hanode.eas"
# The file's NT security descriptor, self-relative (smb.wire.security), when
# a client set one or the file inherited one; absent means the default.
_SD_XATTR = "user.hanode.sd"
# DOS attributes (4) and creation time as a FILETIME (8).
_DOS_FORMAT = struct.Struct("<IQ")

FILE_ATTRIBUTE_READONLY = 0x01
FILE_ATTRIBUTE_HIDDEN = 0x02
FILE_ATTRIBUTE_SYSTEM = 0x04
FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_ARCHIVE = 0x20
FILE_ATTRIBUTE_NORMAL = 0x80
FILE_ATTRIBUTE_TEMPORARY = 0x100
FILE_ATTRIBUTE_SPARSE_FILE = 0x200
FILE_ATTRIBUTE_NOT_CONTENT_INDEXED = 0x2000
# The attributes a client may set; the rest are derived from the file.
SETTABLE_ATTRIBUTES = (FILE_ATTRIBUTE_READONLY | FILE_ATTRIBUTE_HIDDEN
                       | FILE_ATTRIBUTE_SYSTEM | FILE_ATTRIBUTE_ARCHIVE
                       | FILE_ATTRIBUTE_TEMPORARY | FILE_ATTRIBUTE_NOT_CONTENT_INDEXED)

_EPOCH_AS_FILETIME = 116444736000000000


class VfsError(Exception):
    """A file operation refused; ``status`` is what the client is told."""

    def __init__(self, status: int, why: str = ""):
        super().__init__(why or hex(status))
        self.status = status


def filetime(ns: int) -> int:
    """Unix nanoseconds as a Windows FILETIME (100 ns ticks since 1601)."""
    return ns // 100 + _EPOCH_AS_FILETIME


def unix_ns(ft: int) -> int:
    return (ft - _EPOCH_AS_FILETIME) * 100


# The share root's directory that belongs to hanode, not to clients: the
# storage identity marker and the health probe's scratch files live there
# (hanode.share_storage).  Clients can neither see nor open it, so none can
# delete the marker and take the share off every node.
RESERVED_NAME = ".hanode"


def is_reserved(parts: tuple[str, ...]) -> bool:
    """True for hanode's own directory at the share root, in any spelling."""
    return bool(parts) and parts[0].casefold() == RESERVED_NAME


def parse_name(name: str) -> tuple[str, ...]:
    """Split a client's share-relative name into checked components.

    The empty name is the share root.  A name ending in ``::$DATA`` names the
    file's default data stream, which is the file; any other stream is
    refused because the share does not store alternate streams.
    """
    if name.endswith("::$DATA"):
        name = name[: -len("::$DATA")]
    if not name:
        return ()
    if name.startswith("\\"):
        raise VfsError(Status.INVALID_PARAMETER, "name starts with a separator")
    if name.endswith("\\"):
        name = name[:-1]
    parts = tuple(name.split("\\"))
    for part in parts:
        if part in ("", "."):
            raise VfsError(Status.OBJECT_NAME_INVALID, "empty or '.' component")
        if part == "..":
            raise VfsError(Status.OBJECT_PATH_SYNTAX_BAD, "'..' component")
        if ":" in part:
            raise VfsError(Status.OBJECT_NAME_INVALID, "alternate data streams are not stored")
        if any(c in _INVALID_CHARS for c in part):
            raise VfsError(Status.OBJECT_NAME_INVALID, "invalid character")
        try:
            encoded = part.encode("utf-8")
        except UnicodeEncodeError:  # a lone UTF-16 surrogate
            raise VfsError(Status.OBJECT_NAME_INVALID, "not valid UTF-16") from None
        if len(encoded) > _MAX_COMPONENT_BYTES:
            raise VfsError(Status.OBJECT_NAME_INVALID, "component too long")
    if is_reserved(parts):
        raise VfsError(Status.OBJECT_NAME_NOT_FOUND, "hanode's own directory")
    return parts


@dataclass
class Lookup:
    """Where a name lives: the open parent directory and the on-disk name.

    ``name`` is the existing entry's real spelling when ``st`` is set, or the
    client's spelling for an entry that does not exist yet.  The caller owns
    ``parent_fd`` and closes it (use the object as a context manager).
    """

    parent_fd: int
    name: str
    parts: tuple[str, ...]
    st: os.stat_result | None

    def __enter__(self) -> "Lookup":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.parent_fd)


@dataclass(frozen=True)
class DirEntry:
    name: str
    st: os.stat_result


def _os_error(exc: OSError, *, final: bool) -> VfsError:
    code = exc.errno
    if code == errno.ENOENT:
        return VfsError(Status.OBJECT_NAME_NOT_FOUND if final else Status.OBJECT_PATH_NOT_FOUND)
    if code in (errno.ENOTDIR, errno.ELOOP):
        return VfsError(Status.ACCESS_DENIED if final and code == errno.ELOOP
                        else Status.OBJECT_PATH_NOT_FOUND)
    if code == errno.EEXIST:
        return VfsError(Status.OBJECT_NAME_COLLISION)
    if code == errno.ENOTEMPTY:
        return VfsError(Status.DIRECTORY_NOT_EMPTY)
    if code == errno.EISDIR:
        return VfsError(Status.FILE_IS_A_DIRECTORY)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return VfsError(Status.ACCESS_DENIED)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return VfsError(Status.DISK_FULL)
    if code == errno.ENAMETOOLONG:
        return VfsError(Status.OBJECT_NAME_INVALID)
    if code == errno.EMFILE or code == errno.ENFILE:
        return VfsError(Status.INSUFFICIENT_RESOURCES)
    return VfsError(Status.UNSUCCESSFUL, str(exc))


def _casefold_match(names: list[str], name: str) -> str | None:
    """The first of ``names`` equal to ``name`` but for case, or None.

    Every new name's CREATE asks this of its whole directory, so it runs in
    C rather than per entry in Python (about ten times faster for 10,000
    names): all names folded at once, joined by NUL, which no name holds
    and which folding keeps, so the NULs before a match count its index
    even where folding changed a name's length (``ß`` becomes ``ss``).
    """
    folded = ("\0" + "\0".join(names) + "\0").casefold()
    at = folded.find("\0" + name.casefold() + "\0")
    return None if at < 0 else names[folded.count("\0", 0, at)]


class Share:
    """One share's directory, opened once; every access starts from it."""

    def __init__(self, root: str):
        try:
            self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise VfsError(Status.BAD_NETWORK_NAME, f"{root}: {exc.strerror}") from None
        self.root = root

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # -- name resolution -------------------------------------------------

    def lookup(self, parts: tuple[str, ...]) -> Lookup:
        """Walk to the parent of ``parts`` and find the last component.

        ``parts`` must be non-empty; the share root has no parent.
        """
        fd = os.dup(self.root_fd)
        real: list[str] = []
        try:
            for part in parts[:-1]:
                name = self._find(fd, part)
                if name is None:
                    raise VfsError(Status.OBJECT_PATH_NOT_FOUND)
                try:
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                    | os.O_CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    raise _os_error(exc, final=False) from None
                os.close(fd)
                fd = child
                real.append(name)
            name = self._find(fd, parts[-1])
            st = None
            if name is not None:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            else:
                name = parts[-1]
            return Lookup(fd, name, tuple(real) + (name,), st)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _find(dir_fd: int, name: str) -> str | None:
        """The on-disk spelling of ``name`` in the directory, or None."""
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return name
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(exc, final=False) from None
        if nowait.active():
            raise nowait.WouldBlock()  # the directory may be large
        try:
            names = os.listdir(dir_fd)
        except OSError as exc:
            raise _os_error(exc, final=False) from None
        return _casefold_match(names, name)

    # -- opening and creating --------------------------------------------

    def open_root(self) -> int:
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.root_fd)

    def open(self, where: Lookup, *, write: bool, create: bool = False,
             directory: bool = False) -> int:
        """Open (or create) the looked-up entry; symlinks and devices are refused."""
        if where.st is not None and not (stat_mod.S_ISREG(where.st.st_mode)
                                         or stat_mod.S_ISDIR(where.st.st_mode)):
            raise VfsError(Status.ACCESS_DENIED, "not a regular file or directory")
        flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            if directory:
                if create:
                    os.mkdir(where.name, 0o777, dir_fd=where.parent_fd)
                return os.open(where.name, flags | os.O_RDONLY | os.O_DIRECTORY,
                               dir_fd=where.parent_fd)
            if create:
                flags |= os.O_CREAT | os.O_EXCL
            is_dir = where.st is not None and stat_mod.S_ISDIR(where.st.st_mode)
            flags |= os.O_RDWR if write and not is_dir else os.O_RDONLY
            return os.open(where.name, flags, 0o666, dir_fd=where.parent_fd)
        except OSError as exc:
            raise _os_error(exc, final=True) from None

    def unlink(self, parts: tuple[str, ...], ino: int, is_dir: bool) -> None:
        """Remove ``parts`` if it is still the file with inode ``ino``."""
        try:
            with self.lookup(parts) as where:
                if where.st is None or where.st.st_ino != ino:
                    return
                if is_dir:
                    os.rmdir(where.name, dir_fd=where.parent_fd)
                else:
                    os.unlink(where.name, dir_fd=where.parent_fd)
        except OSError as exc:
            raise _os_error(exc, final=True) from None

    def rename(self, src: tuple[str, ...], ino: int, dst: tuple[str, ...],
               replace: bool, sync: bool = False) -> tuple[str, ...]:
        """Move the open file at ``src`` (inode ``ino``) to ``dst``; returns its new
        parts.  sync: both directories' entries are on stable storage on return."""
        with self.lookup(src) as old:
            if old.st is None or old.st.st_ino != ino:
                raise VfsError(Status.OBJECT_NAME_NOT_FOUND, "source moved away")
            with self.lookup(dst) as new:
                target = new.name
                if new.st is not None:
                    if new.st.st_ino == ino:
                        target = dst[-1]  # a change of case only
                    elif not replace:
                        raise VfsError(Status.OBJECT_NAME_COLLISION)
                    elif stat_mod.S_ISDIR(new.st.st_mode):
                        raise VfsError(Status.ACCESS_DENIED, "cannot replace a directory")
                try:
                    os.rename(old.name, target, src_dir_fd=old.parent_fd,
                              dst_dir_fd=new.parent_fd)
                except OSError as exc:
                    raise _os_error(exc, final=True) from None
                if sync:
                    sync_dir(new.parent_fd)
                    if old.parts[:-1] != new.parts[:-1]:
                        sync_dir(old.parent_fd)
                return new.parts[:-1] + (target,)

    def link(self, src: tuple[str, ...], ino: int, dst: tuple[str, ...],
             replace: bool) -> None:
        """Give the open file at ``src`` (inode ``ino``) the further name ``dst``.

        With ``replace`` an existing file at ``dst`` gives way: the link is
        made under a scratch name and renamed over it, so that ``dst`` names
        either the old file or the new link at every moment.
        """
        with self.lookup(src) as old:
            if old.st is None or old.st.st_ino != ino:
                raise VfsError(Status.OBJECT_NAME_NOT_FOUND, "source moved away")
            with self.lookup(dst) as new:
                if new.st is not None and not replace:
                    raise VfsError(Status.OBJECT_NAME_COLLISION)
                if new.st is not None and stat_mod.S_ISDIR(new.st.st_mode):
                    raise VfsError(Status.FILE_IS_A_DIRECTORY, "cannot replace a directory")
                if new.st is not None and new.st.st_ino == ino:
                    return  # already a name of this file
                scratch = new.name if new.st is None else f".hanode-link-{secrets.token_hex(8)}"
                try:
                    os.link(old.name, scratch, src_dir_fd=old.parent_fd,
                            dst_dir_fd=new.parent_fd, follow_symlinks=False)
                except OSError as exc:
                    raise _os_error(exc, final=True) from None
                if scratch == new.name:
                    return
                try:
                    os.rename(scratch, new.name, src_dir_fd=new.parent_fd,
                              dst_dir_fd=new.parent_fd)
                except OSError as exc:
                    os.unlink(scratch, dir_fd=new.parent_fd)
                    raise _os_error(exc, final=True) from None

    def parent_stat(self, parts: tuple[str, ...]) -> os.stat_result:
        """The directory that holds ``parts``."""
        with self.lookup(parts) as where:
            return os.fstat(where.parent_fd)

    def exists(self, parts: tuple[str, ...]) -> os.stat_result | None:
        with self.lookup(parts) as where:
            return where.st


def list_directory(dir_fd: int, want: Callable[[str], bool] | None = None) -> Iterator[DirEntry]:
    """Entries of an open directory, without symlinks (they cannot be opened).

    want: a test on the name, applied before the entry is stat'ed; a search
    for one name in a large directory then costs one stat, not one per entry.
    Never in a no-waiting attempt (smb.nowait): the directory may be large.
    """
    if nowait.active():
        raise nowait.WouldBlock()
    try:
        with os.scandir(dir_fd) as it:
            for entry in it:
                if want is not None and not want(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat_mod.S_ISLNK(st.st_mode):
                    continue
                yield DirEntry(entry.name, st)
    except OSError as exc:
        raise _os_error(exc, final=True) from None


def walk(dir_fd: int, recursive: bool, limit: int) -> Iterator[tuple[str, os.stat_result]]:
    """(backslash-separated relative name, stat) of what lies under an open
    directory, at most ``limit`` entries; subdirectories are opened from
    ``dir_fd`` with O_NOFOLLOW like every other walk here."""
    pending: list[tuple[str, int]] = [("", os.dup(dir_fd))]
    seen = 0
    try:
        while pending:
            prefix, fd = pending.pop()
            try:
                for entry in list_directory(fd):
                    if seen >= limit:
                        return
                    seen += 1
                    name = prefix + entry.name
                    yield name, entry.st
                    if recursive and stat_mod.S_ISDIR(entry.st.st_mode):
                        try:
                            child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY
                                            | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                        except OSError:
                            continue  # gone or replaced meanwhile
                        pending.append((name + "\\", child))
            except VfsError:
                pass  # the directory went away while being read
            finally:
                os.close(fd)
    finally:
        for _, fd in pending:
            os.close(fd)


def restat(dir_fd: int, name: str) -> os.stat_result | None:
    """An entry's current stat, or None once it is gone (or became a symlink)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return None if stat_mod.S_ISLNK(st.st_mode) else st


def parent_stat(dir_fd: int) -> os.stat_result:
    return os.stat("..", dir_fd=dir_fd, follow_symlinks=False)


# -- DOS attributes and creation time, kept in an extended attribute ---------


def _read_dos(target: int | str) -> tuple[int, int] | None:
    try:
        raw = (os.getxattr(target, _DOS_XATTR) if isinstance(target, int)
               else os.getxattr(target, _DOS_XATTR, follow_symlinks=False))
    except OSError:
        return None
    if len(raw) != _DOS_FORMAT.size:
        return None
    return _DOS_FORMAT.unpack(raw)


def dos_info(fd: int | None, st: os.stat_result, *, name: str = "",
             dir_fd: int | None = None) -> tuple[int, int]:
    """(attributes, creation FILETIME) of a file, by its fd or by name in ``dir_fd``.

    Listing entries are read through /proc/self/fd/<dir_fd>/<name>: xattr
    calls take no dir_fd, and that path cannot leave the open directory (the
    name is a single entry and the last step does not follow symlinks).
    """
    if fd is not None:
        stored = _read_dos(fd)
    elif dir_fd is not None and name not in (".", ".."):
        stored = _read_dos(f"/proc/self/fd/{dir_fd}/{name}")
    else:
        stored = None
    is_dir = stat_mod.S_ISDIR(st.st_mode)
    if stored is not None:
        attrs, created = stored
    else:
        attrs = 0 if is_dir else FILE_ATTRIBUTE_ARCHIVE
        created = filetime(min(st.st_mtime_ns, st.st_ctime_ns))
    if name.startswith(".") and name not in (".", ".."):
        attrs |= FILE_ATTRIBUTE_HIDDEN
    if is_dir:
        attrs |= FILE_ATTRIBUTE_DIRECTORY
    elif attrs == 0:
        attrs = FILE_ATTRIBUTE_NORMAL
    return attrs, created


def set_dos_info(fd: int, st: os.stat_result, attrs: int | None = None,
                 created: int | None = None, sparse: bool | None = None) -> None:
    """Store attributes and/or creation time; silently kept derived where xattrs are off.

    SPARSE_FILE is not a client-settable attribute (SET_INFO ignores it); only
    FSCTL_SET_SPARSE changes it, through ``sparse``.
    """
    cur_attrs, cur_created = dos_info(fd, st)
    kept = cur_attrs & FILE_ATTRIBUTE_SPARSE_FILE
    if attrs is not None:
        cur_attrs = attrs & SETTABLE_ATTRIBUTES
    else:
        cur_attrs &= SETTABLE_ATTRIBUTES
    if sparse is not None:
        kept = FILE_ATTRIBUTE_SPARSE_FILE if sparse else 0
    cur_attrs |= kept
    if created is not None:
        cur_created = created
    try:
        os.setxattr(fd, _DOS_XATTR, _DOS_FORMAT.pack(cur_attrs, cur_created))
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise _os_error(exc, final=True) from None


def get_sd(fd: int) -> bytes | None:
    """The stored security descriptor's bytes, or None (none stored, or xattrs off)."""
    try:
        return os.getxattr(fd, _SD_XATTR)
    except OSError:
        return None


def set_sd(fd: int, raw: bytes) -> None:
    """Store a security descriptor; unlike DOS attributes it is not silently
    dropped where xattrs are off (a client must not believe a file protected)."""
    try:
        os.setxattr(fd, _SD_XATTR, raw)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise VfsError(Status.NOT_SUPPORTED, "the share keeps no extended attributes") \
                from None
        raise _os_error(exc, final=True) from None


def get_eas(fd: int) -> list[ea_wire.Ea]:
    try:
        raw = os.getxattr(fd, _EA_XATTR)
    except OSError:
        return []
    try:
        return ea_wire.parse_full_ea_list(raw)
    except ValueError:
        return []  # not ours to interpret; shown as no EAs


def set_eas(fd: int, eas: list[ea_wire.Ea]) -> None:
    try:
        if eas:
            os.setxattr(fd, _EA_XATTR, ea_wire.encode_full_ea_list(eas))
        else:
            os.removexattr(fd, _EA_XATTR)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise VfsError(Status.EAS_NOT_SUPPORTED) from None
        if exc.errno in (errno.ENOSPC, errno.E2BIG, errno.ERANGE):
            raise VfsError(Status.EA_TOO_LARGE) from None
        raise _os_error(exc, final=True) from None


def set_times(fd: int, atime_ns: int | None, mtime_ns: int | None) -> None:
    if atime_ns is None and mtime_ns is None:
        return
    st = os.fstat(fd)
    try:
        os.utime(fd, ns=(atime_ns if atime_ns is not None else st.st_atime_ns,
                         mtime_ns if mtime_ns is not None else st.st_mtime_ns))
    except OSError as exc:
        raise _os_error(exc, final=True) from None


def truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        raise _os_error(exc, final=True) from None


def pread_into(fd: int, buf: bytearray, offset: int) -> int:
    try:
        return os.preadv(fd, [buf], offset)
    except OSError as exc:
        raise _os_error(exc, final=True) from None


class FileSlice:
    """A READ reply's data while it is still in the file.

    The connection hands it to the kernel (sendfile(2)) when the reply is
    neither signed nor encrypted, and otherwise reads it into a buffer of its
    own: either way the handler allocates and copies nothing.  The slice holds
    its own duplicate of the file descriptor, so a CLOSE of the open from
    another connection cannot pull the file away, or put another file under
    the same number, while the data is on its way.  A file truncated after the
    length was fixed reads as zeros past its new end (the reply's length has
    already been promised).
    """

    def __init__(self, fd: int, offset: int, length: int):
        self.fd = os.dup(fd)
        self.offset = offset
        self.length = length
        self._closer = weakref.finalize(self, os.close, self.fd)

    @classmethod
    def of(cls, fd: int, offset: int, length: int) -> "FileSlice | None":
        """The part of [offset, offset+length) before the end of the file, or None
        when nothing of it is (blocking: fstat and dup, run it in a thread)."""
        try:
            size = os.fstat(fd).st_size
            n = min(length, size - offset)
            return cls(fd, offset, n) if n > 0 else None
        except OSError as exc:
            raise _os_error(exc, final=True) from None

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        self._closer()

    def read_into(self, buf: bytearray | memoryview, start: int = 0) -> None:
        """Fill ``buf`` with the slice's bytes from ``start`` on (blocking)."""
        view = memoryview(buf)[:self.length - start]
        done = 0
        try:
            while done < len(view):
                got = os.preadv(self.fd, [view[done:]], self.offset + start + done)
                if not got:
                    view[done:] = bytes(len(view) - done)
                    break
                done += got
        except OSError as exc:
            raise _os_error(exc, final=True) from None

    def send_some(self, sock_fd: int, start: int) -> tuple[int, bool]:
        """sendfile(2) of the slice from ``start`` to a non-blocking socket until
        the socket is full, the slice is sent or the file ended early: (bytes
        sent, whether the socket was full).  Blocking (a page not in the cache
        is read from the disk); OSError when the file cannot be sent this way."""
        done = 0
        while start + done < self.length:
            try:
                sent = os.sendfile(sock_fd, self.fd, self.offset + start + done,
                                   self.length - start - done)
            except BlockingIOError:
                return done, True
            except OSError:
                if not done:
                    raise
                break  # what went is counted; the caller reads the rest
            if not sent:
                break
            done += sent
        return done, False


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
        return done
    except OSError as exc:
        raise _os_error(exc, final=True) from None


def fdatasync(fd: int) -> None:
    try:
        os.fdatasync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # directories on some filesystems
            raise _os_error(exc, final=True) from None


def sync_dir(fd: int) -> None:
    """Make the names in directory ``fd`` durable (a file created, or moved in or
    out): its entries are on stable storage, not only in the page cache."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a filesystem that cannot sync directories
            raise _os_error(exc, final=True) from None


def allocated_ranges(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """(offset, length) of the data extents in [start, end), from SEEK_DATA/SEEK_HOLE."""
    ranges: list[tuple[int, int]] = []
    pos = start
    try:
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if data >= end:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            ranges.append((data, hole - data))
            pos = hole
    except OSError as exc:
        raise _os_error(exc, final=True) from None
    return ranges


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate a range (it reads back as zeros); os has no fallocate(2) modes."""
    if length <= 0:
        return
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise _os_error(OSError(err, os.strerror(err)), final=True)


def disk_usage(fd: int) -> os.statvfs_result:
    return os.fstatvfs(fd)


def is_empty_directory(fd: int) -> bool:
    with os.scandir(fd) as it:
        return next(iter(it), None) is None
