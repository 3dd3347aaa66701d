"""The share jail on a real tmp directory: names that must not get out, and
the case-insensitive lookup Windows clients rely on."""

from __future__ import annotations

import os

import pytest

from smb import vfs
from smb.wire.header import Status


@pytest.fixture
def share(tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    (root / "Docs").mkdir()
    (root / "Docs" / "Report.TXT").write_text("inside")
    (tmp_path / "secret").write_text("outside")
    s = vfs.Share(str(root))
    try:
        yield s, root, tmp_path
    finally:
        s.close()


def _status(fn, *args):
    with pytest.raises(vfs.VfsError) as info:
        fn(*args)
    return info.value.status


@pytest.mark.parametrize("name, status", [
    ("..", Status.OBJECT_PATH_SYNTAX_BAD),
    ("..\\secret", Status.OBJECT_PATH_SYNTAX_BAD),
    ("Docs\\..\\..\\secret", Status.OBJECT_PATH_SYNTAX_BAD),
    ("\\etc\\passwd", Status.INVALID_PARAMETER),
    ("a\\\\b", Status.OBJECT_NAME_INVALID),
    (".", Status.OBJECT_NAME_INVALID),
    ("bad*name", Status.OBJECT_NAME_INVALID),
    ("bad?name", Status.OBJECT_NAME_INVALID),
    ('bad"name', Status.OBJECT_NAME_INVALID),
    ("bad|name", Status.OBJECT_NAME_INVALID),
    ("bad<name", Status.OBJECT_NAME_INVALID),
    ("tab\tname", Status.OBJECT_NAME_INVALID),
    ("slash/name", Status.OBJECT_NAME_INVALID),
    ("file:stream", Status.OBJECT_NAME_INVALID),
    ("file:stream:$DATA", Status.OBJECT_NAME_INVALID),
    ("x" * 256, Status.OBJECT_NAME_INVALID),
    ("lone\ud800surrogate", Status.OBJECT_NAME_INVALID),
])
def test_bad_names_are_refused(name, status):
    assert _status(vfs.parse_name, name) == status


def test_good_names_split_into_components():
    assert vfs.parse_name("") == ()
    assert vfs.parse_name("a\\b c\\d.txt") == ("a", "b c", "d.txt")
    assert vfs.parse_name("dir\\") == ("dir",)
    assert vfs.parse_name("f.txt::$DATA") == ("f.txt",)
    assert vfs.parse_name("Grüße\\日本語.txt") == ("Grüße", "日本語.txt")


def test_case_insensitive_lookup_finds_real_spelling(share):
    s, root, _ = share
    with s.lookup(("docs", "report.txt")) as where:
        assert where.st is not None
        assert where.name == "Report.TXT"
        assert where.parts == ("Docs", "Report.TXT")
        fd = s.open(where, write=False)
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_exact_match_wins_over_case_fold(share):
    s, root, _ = share
    (root / "docs").mkdir()  # a second directory differing only by case
    (root / "docs" / "only-lower").write_text("lower")
    with s.lookup(("docs", "only-lower")) as where:
        assert where.parts == ("docs", "only-lower")
        assert where.st is not None


def test_case_fold_match_past_names_that_fold_longer(share):
    """The match is found by position among all names folded at once: names
    before it whose folding changes their length (ß, the ﬁ ligature) must not
    shift it to a neighbour."""
    s, root, _ = share
    for name in ("Straße", "ﬁle", "aﬃx", "Target.TXT", "target-not"):
        (root / "Docs" / name).write_text(name)
    for asked, found in (("target.txt", "Target.TXT"), ("STRASSE", "Straße"),
                         ("FILE", "ﬁle"), ("affix", "aﬃx"), ("TARGET-NOT", "target-not")):
        with s.lookup(("docs", asked)) as where:
            assert where.name == found and where.st is not None
    assert vfs._casefold_match(["b", "ß", "SS", "x"], "ss") == "ß"  # the first in order
    assert vfs._casefold_match(["ab", "b"], "a") is None  # whole names only
    assert vfs._casefold_match([], "a") is None


def test_missing_names(share):
    s, _, _ = share
    with s.lookup(("Docs", "nothere")) as where:
        assert where.st is None and where.name == "nothere"
    assert _status(s.lookup, ("nodir", "x")) == Status.OBJECT_PATH_NOT_FOUND
    # A file used as a directory is a path that does not exist.
    assert _status(s.lookup, ("Docs", "Report.TXT", "x")) == Status.OBJECT_PATH_NOT_FOUND


def test_symlink_to_outside_file_is_refused(share):
    s, root, tmp = share
    (root / "link").symlink_to(tmp / "secret")
    with s.lookup(("link",)) as where:
        with pytest.raises(vfs.VfsError) as info:
            s.open(where, write=False)
    assert info.value.status == Status.ACCESS_DENIED


def test_symlink_to_etc_directory_cannot_be_walked(share):
    s, root, _ = share
    (root / "etc").symlink_to("/etc")
    assert _status(s.lookup, ("etc", "passwd")) == Status.OBJECT_PATH_NOT_FOUND
    with s.lookup(("etc",)) as where:
        with pytest.raises(vfs.VfsError):
            s.open(where, write=False, directory=True)


def test_create_through_dangling_symlink_is_refused(share):
    s, root, tmp = share
    (root / "dangling").symlink_to(tmp / "created-outside")
    with s.lookup(("dangling",)) as where:
        with pytest.raises(vfs.VfsError):
            s.open(where, write=True, create=True)
    assert not (tmp / "created-outside").exists()


def test_symlinks_are_hidden_from_listings(share):
    s, root, tmp = share
    (root / "link").symlink_to(tmp / "secret")
    fd = s.open_root()
    try:
        names = sorted(e.name for e in vfs.list_directory(fd))
    finally:
        os.close(fd)
    assert names == ["Docs"]


def test_rename_unlink_and_case_only_rename(share):
    s, root, _ = share
    ino = (root / "Docs" / "Report.TXT").stat().st_ino
    parts = s.rename(("Docs", "Report.TXT"), ino, ("docs", "report.txt"), False)
    assert parts == ("Docs", "report.txt")
    assert sorted(os.listdir(root / "Docs")) == ["report.txt"]
    (root / "other").write_text("x")
    with pytest.raises(vfs.VfsError) as info:
        s.rename(parts, ino, ("OTHER",), False)
    assert info.value.status == Status.OBJECT_NAME_COLLISION
    parts = s.rename(parts, ino, ("OTHER",), True)
    assert parts == ("other",) and (root / "other").read_text() == "inside"
    s.unlink(parts, ino, False)
    assert not (root / "other").exists()


def test_unlink_checks_inode(share):
    s, root, _ = share
    (root / "f").write_text("a")
    s.unlink(("f",), ino=1, is_dir=False)  # not that file any more: nothing happens
    assert (root / "f").exists()


def test_dos_attributes_round_trip(share):
    s, root, _ = share
    with s.lookup(("Docs", "Report.TXT")) as where:
        fd = s.open(where, write=True)
    try:
        st = os.fstat(fd)
        vfs.set_dos_info(fd, st, attrs=vfs.FILE_ATTRIBUTE_READONLY | vfs.FILE_ATTRIBUTE_HIDDEN,
                         created=vfs.filetime(10**18))
        attrs, created = vfs.dos_info(fd, os.fstat(fd))
    finally:
        os.close(fd)
    assert attrs == vfs.FILE_ATTRIBUTE_READONLY | vfs.FILE_ATTRIBUTE_HIDDEN
    assert created == vfs.filetime(10**18)


def test_filetime_round_trip():
    assert vfs.filetime(0) == 116444736000000000
    assert vfs.unix_ns(vfs.filetime(1_700_000_000_000_000_000)) == 1_700_000_000_000_000_000
