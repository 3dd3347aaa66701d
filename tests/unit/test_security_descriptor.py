"""smb.wire.security: the self-relative descriptor format against Samba's own
NDR code (ndrdump re-encodes what it parsed; the bytes must be ours), and
the access check and inheritance rules of MS-DTYP 2.5.3."""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smb.wire import security as sec

sids = st.builds(sec.Sid, st.integers(0, (1 << 48) - 1),
                 st.lists(st.integers(0, (1 << 32) - 1), max_size=sec._MAX_SUBS).map(tuple))
mask_aces = st.builds(sec.Ace, st.sampled_from(sorted(sec._MASK_AND_SID)),
                      st.integers(0, 0x1F), st.integers(0, (1 << 32) - 1), sids)
opaque_aces = st.builds(lambda kind, flags, words: sec.Ace(kind, flags, body=words),
                        st.integers(0x4, 0x13), st.integers(0, 0xFF),
                        st.binary(max_size=40).map(lambda b: b + b"\0" * (-len(b) % 4)))
control_bits = st.integers(0, 0xFFFF).map(lambda c: c & ~(sec.SE_DACL_PRESENT
                                                        | sec.SE_SACL_PRESENT))


def acls(aces):
    return st.builds(sec.Acl, st.lists(aces, max_size=6).map(tuple))


def descriptors(aces):
    return st.builds(sec.SecurityDescriptor, st.none() | sids, st.none() | sids,
                     st.none() | acls(aces), st.none() | acls(aces), control_bits)


def _normal(sd: sec.SecurityDescriptor) -> sec.SecurityDescriptor:
    """What encoding adds: the present bits of the parts there, self-relative."""
    control = sd.control | sec.SE_SELF_RELATIVE
    control |= sec.SE_DACL_PRESENT if sd.dacl is not None else 0
    control |= sec.SE_SACL_PRESENT if sd.sacl is not None else 0
    return sec.SecurityDescriptor(sd.owner, sd.group, sd.dacl, sd.sacl, control)


@given(descriptors(mask_aces | opaque_aces))
def test_descriptor_round_trip(sd):
    assert sec.decode(sd.encode()) == _normal(sd)


@given(st.binary(max_size=200))
def test_garbage_is_refused_cleanly(data):
    try:
        sec.decode(data)
    except sec.SecurityError:
        pass


@given(descriptors(mask_aces), st.integers(0, 0xF))
def test_select_keeps_only_the_parts_asked_for(sd, which):
    picked = sec.decode(sd.select(which).encode())
    assert picked.owner == (sd.owner if which & sec.OWNER_SECURITY_INFORMATION else None)
    assert picked.group == (sd.group if which & sec.GROUP_SECURITY_INFORMATION else None)
    assert picked.dacl == (sd.dacl if which & sec.DACL_SECURITY_INFORMATION else None)
    assert picked.sacl == (sd.sacl if which & sec.SACL_SECURITY_INFORMATION else None)


def _ndrdump(tmp_path, raw: bytes) -> str:
    path = tmp_path / "sd.bin"
    path.write_bytes(raw)
    done = subprocess.run(["ndrdump", "--validate", "security", "security_descriptor",
                           "struct", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@settings(max_examples=30, deadline=None)
@given(descriptors(mask_aces))
def test_samba_parses_and_reencodes_the_same_bytes(tmp_path_factory, sd):
    out = _ndrdump(tmp_path_factory.mktemp("nd"), sd.encode())
    assert "dump OK" in out
    assert "WARNING" not in out  # ndrdump's word for "pushed bytes differ from the input"
    if sd.owner is not None:
        shown = re.search(r"^ +owner_sid +: (S-\S+)$", out, re.M)
        assert shown is not None and sec.Sid.parse(shown.group(1)) == sd.owner


def test_samba_reads_our_fields(tmp_path):
    owner = sec.Sid.parse("S-1-5-21-1-2-3-1001")
    dacl = sec.Acl((sec.Ace(sec.ACCESS_DENIED_ACE_TYPE, sec.OBJECT_INHERIT_ACE, 0x10000,
                            sec.EVERYONE),
                    sec.Ace(sec.ACCESS_ALLOWED_ACE_TYPE, 0x13, 0x1F01FF, owner)))
    out = _ndrdump(tmp_path, sec.SecurityDescriptor(owner, None, dacl).encode())
    assert "SEC_ACE_TYPE_ACCESS_DENIED" in out and "trustee                  : S-1-1-0" in out
    assert "access_mask              : 0x00010000" in out
    assert "1: SEC_ACE_FLAG_INHERITED_ACE" in out and "group_sid                : NULL" in out


def test_sid_text():
    assert str(sec.Sid.parse("S-1-5-21-10-20-30-1000")) == "S-1-5-21-10-20-30-1000"
    assert sec.Sid.parse("S-1-0x10-5") == sec.Sid(16, (5,))
    for bad in ("S-1", "X-1-5", "S-1-5-x", "S-1-5-" + "-".join(["1"] * 16), "S-1-5-4294967296"):
        with pytest.raises(ValueError):
            sec.Sid.parse(bad)


# -- access -------------------------------------------------------------------------

ME = sec.Sid.parse("S-1-5-21-1-2-3-1000")
OTHER = sec.Sid.parse("S-1-5-21-1-2-3-1001")
TOKEN = frozenset({ME, sec.EVERYONE, sec.AUTHENTICATED_USERS})


def _sd(*aces, owner=OTHER, auto=sec.SE_DACL_AUTO_INHERITED):
    return sec.SecurityDescriptor(owner, None, sec.Acl(tuple(aces)),
                                  control=sec.SE_SELF_RELATIVE | sec.SE_DACL_PRESENT | auto)


def allow(sid, mask, flags=0):
    return sec.Ace(sec.ACCESS_ALLOWED_ACE_TYPE, flags, mask, sid)


def deny(sid, mask, flags=0):
    return sec.Ace(sec.ACCESS_DENIED_ACE_TYPE, flags, mask, sid)


def test_first_ace_wins_and_inherit_only_aces_are_skipped():
    assert sec.granted(_sd(deny(ME, sec.DELETE), allow(sec.EVERYONE, 0x1F01FF)), TOKEN) \
        == 0x1F01FF & ~sec.DELETE
    assert sec.granted(_sd(allow(sec.EVERYONE, 0x1F01FF), deny(ME, sec.DELETE)), TOKEN) \
        == 0x1F01FF
    assert sec.granted(_sd(allow(ME, 0x1F01FF, sec.INHERIT_ONLY_ACE)), TOKEN) == 0
    assert sec.granted(_sd(allow(OTHER, 0x1F01FF)), TOKEN) == 0
    assert sec.granted(_sd(allow(ME, sec.GENERIC_READ)), TOKEN) == sec.FILE_GENERIC_READ


def test_owner_keeps_read_control_and_write_dac_and_a_null_dacl_grants_all():
    assert sec.granted(_sd(deny(ME, 0x1F01FF), owner=ME), TOKEN) \
        == sec.READ_CONTROL | sec.WRITE_DAC
    assert sec.granted(sec.SecurityDescriptor(OTHER), TOKEN) == sec.FILE_ALL_ACCESS


def test_owner_rights_aces_replace_the_owners_implicit_rights():
    sd = _sd(allow(sec.OWNER_RIGHTS, sec.FILE_GENERIC_READ), owner=ME)
    assert sec.granted(sd, TOKEN) == sec.FILE_GENERIC_READ
    assert sec.granted(_sd(allow(sec.OWNER_RIGHTS, 0x1F01FF)), TOKEN) == 0  # not the owner


def test_set_keeps_auto_inherited_only_when_asked_to_inherit():
    old = _sd(allow(ME, 1), auto=0)
    for asked, kept in ((sec.SE_DACL_AUTO_INHERITED, 0),
                        (sec.SE_DACL_AUTO_INHERITED | sec.SE_DACL_AUTO_INHERIT_REQ,
                         sec.SE_DACL_AUTO_INHERITED),
                        (sec.SE_DACL_PROTECTED, sec.SE_DACL_PROTECTED)):
        new = _sd(allow(OTHER, 2), auto=asked)
        merged = old.merged(new, sec.DACL_SECURITY_INFORMATION)
        assert merged.control == sec.SE_SELF_RELATIVE | sec.SE_DACL_PRESENT | kept
        assert merged.dacl == new.dacl and merged.owner == old.owner
    null = old.merged(sec.SecurityDescriptor(), sec.DACL_SECURITY_INFORMATION)
    assert null.dacl is None and null.dacl_present  # the NULL DACL
    assert sec.granted(null, TOKEN) == sec.FILE_ALL_ACCESS
    owned = old.merged(sec.SecurityDescriptor(ME), sec.OWNER_SECURITY_INFORMATION)
    assert (owned.owner, owned.control, owned.dacl) == (ME, old.control, old.dacl)


NO_DELETE = 0x1E01BF  # smbtorture's delete-on-close-perms directory: all but DELETE(_CHILD)


def test_delete_comes_from_the_file_or_from_delete_child_on_the_parent():
    f = _sd(allow(ME, NO_DELETE))
    want = sec.DELETE | sec.FILE_READ_ATTRIBUTES
    assert sec.open_access(f, _sd(allow(ME, NO_DELETE)), TOKEN, 0x1F01FF, want) is None
    assert sec.open_access(f, _sd(allow(ME, sec.FILE_DELETE_CHILD)), TOKEN, 0x1F01FF, want) \
        == want
    # The share's grant bounds everything, DELETE through the parent too.
    assert sec.open_access(f, _sd(allow(ME, 0x1F01FF)), TOKEN, 0x1200A9, want) is None


def test_maximum_allowed_is_what_the_descriptor_allows():
    f = _sd(allow(ME, sec.FILE_GENERIC_READ))
    assert sec.open_access(f, None, TOKEN, 0x1F01FF, sec.MAXIMUM_ALLOWED) \
        == sec.FILE_GENERIC_READ
    assert sec.open_access(f, None, TOKEN, 0x1F01FF, sec.MAXIMUM_ALLOWED | 0x2) is None
    # An overwrite needs FILE_WRITE_DATA even when not asked for.
    assert sec.open_access(f, None, TOKEN, 0x1F01FF, 0x1, implied=0x2) is None


def test_set_maps_generic_rights_of_effective_aces_only():
    acl = sec.Acl((allow(ME, sec.GENERIC_READ | 0x1F0000),
                   allow(ME, sec.GENERIC_ALL, OI | IO)))
    assert sec.with_generic_mapped(acl) == sec.Acl((
        allow(ME, sec.FILE_GENERIC_READ | 0x1F0000), allow(ME, sec.GENERIC_ALL, OI | IO)))


def test_parent_must_allow_adding():
    assert not sec.may_create(_sd(allow(ME, sec.FILE_ADD_SUBDIRECTORY)), TOKEN, 0x1F01FF, False)
    assert sec.may_create(_sd(allow(ME, sec.FILE_ADD_SUBDIRECTORY)), TOKEN, 0x1F01FF, True)


# -- inheritance --------------------------------------------------------------------

GROUP = sec.Sid.parse("S-1-22-2-0")
OI, CI, NP, IO = (sec.OBJECT_INHERIT_ACE, sec.CONTAINER_INHERIT_ACE,
                  sec.NO_PROPAGATE_INHERIT_ACE, sec.INHERIT_ONLY_ACE)
INH = sec.INHERITED_ACE


def test_files_get_object_inherit_aces_without_inheritance_flags():
    parent = _sd(allow(ME, NO_DELETE, OI), allow(OTHER, 1, CI), allow(sec.EVERYONE, 2))
    assert sec.inherit(parent, False, ME, GROUP) == sec.Acl((allow(ME, NO_DELETE, INH),))
    # Below a DACL not marked auto-inherited the ACEs come unmarked (Samba's way).
    unmarked = _sd(allow(ME, NO_DELETE, OI | INH), auto=0)
    assert sec.inherit(unmarked, False, ME, GROUP) == sec.Acl((allow(ME, NO_DELETE),))
    assert sec.inherit(unmarked, True, ME, GROUP) == sec.Acl((allow(ME, NO_DELETE, OI | IO),))


def test_directories_pass_on_what_propagates():
    parent = _sd(allow(ME, 1, CI), allow(ME, 2, OI), allow(ME, 4, CI | NP),
                 allow(ME, 8, OI | NP), allow(ME, 16, CI | IO))
    assert sec.inherit(parent, True, ME, GROUP) == sec.Acl((
        allow(ME, 1, CI | INH), allow(ME, 2, OI | IO | INH), allow(ME, 4, INH),
        allow(ME, 16, CI | INH)))


def test_creator_owner_becomes_the_new_owner():
    parent = _sd(allow(sec.CREATOR_OWNER, sec.GENERIC_ALL, OI | CI | IO))
    assert sec.inherit(parent, False, ME, GROUP) == sec.Acl((allow(ME, 0x1F01FF, INH),))
    assert sec.inherit(parent, True, ME, GROUP) == sec.Acl((
        allow(ME, 0x1F01FF, INH),
        allow(sec.CREATOR_OWNER, sec.GENERIC_ALL, OI | CI | IO | INH)))
    assert sec.inherit(_sd(allow(ME, 1)), False, ME, GROUP) is None


def test_new_file_descriptor_prefers_the_clients_then_the_parents():
    given = sec.SecurityDescriptor(None, None, sec.Acl((allow(OTHER, 1),)))
    made = sec.for_new_file(_sd(allow(ME, 2, OI)), given, False, ME, GROUP, 0x1F01FF)
    assert (made.owner, made.group, made.dacl) == (ME, GROUP, given.dacl)
    made = sec.for_new_file(_sd(allow(ME, 2, OI)), None, False, ME, GROUP, 0x1F01FF)
    assert made.dacl == sec.Acl((allow(ME, 2, INH),))
    assert made.control & sec.SE_DACL_AUTO_INHERITED
    assert sec.for_new_file(None, None, False, ME, GROUP, 0x1F01FF) is None
    assert sec.for_new_file(_sd(allow(ME, 2)), None, False, ME, GROUP, 0x1F01FF) is None
