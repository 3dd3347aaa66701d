"""NT ACLs with Samba's smbcacls (a real client: QUERY_INFO and SET_INFO of
security descriptors, SIDs resolved over lsarpc), hanode beside a private
smbd that keeps NT ACLs as given (acl_xattr, system ACLs ignored): the
same sets must read back as the same ACEs, inheritance included.  Whether
an ACL is enforced is checked on hanode alone: smbd lets its root user
(the test user) past every ACL."""

from __future__ import annotations

import random
import re
import secrets
import subprocess

import pytest

import harness

SMBD_ACLS = "  vfs objects = acl_xattr\n  acl_xattr:ignore system acls = yes\n"
READ = "0x001200a9"
FULL = "0x001f01ff"


@pytest.fixture
def hanode_server(etcd_server, tmp_path):
    """hanode on port 445 (smbcacls 4.17 connects there only) of an address of
    127/8 nobody else uses, rather than on 127.0.0.1 of the host."""
    address = f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", listen=address,
                                port=445) as target:
        yield target


@pytest.fixture(scope="module")
def smbd_acls(tmp_path_factory):
    """smbd on port 445 inside a network namespace of its own (it binds only
    to an interface's address), its clients run there too."""
    ns = f"hnacl{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        wrap = ("ip", "netns", "exec", ns)
        target = harness.start_smbd(tmp_path_factory.mktemp("smbd"), share_extra=SMBD_ACLS,
                                    port=445, wrap=wrap)
        try:
            yield target, wrap
        finally:
            harness.stop(target)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _run(server, *argv: str) -> subprocess.CompletedProcess:
    target, wrap = server if isinstance(server, tuple) else (server, ())
    return subprocess.run([*wrap, *argv], capture_output=True, text=True, timeout=60)


def smbcacls(server, name: str, *args: str) -> subprocess.CompletedProcess:
    target = server[0] if isinstance(server, tuple) else server
    return _run(server, "smbcacls", target.unc, name, "-U", target.credentials, "--numeric",
                *args)


def smbclient(server, commands: str) -> subprocess.CompletedProcess:
    target = server[0] if isinstance(server, tuple) else server
    return _run(server, "smbclient", "-p", str(target.port), target.unc,
                "-U", target.credentials, "-c", commands)


def aces(target, name: str) -> list[str]:
    """The ACL lines smbcacls shows (masks in hex, SIDs numeric)."""
    done = smbcacls(target, name)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("ACL:")]


def owner(target, name: str) -> str:
    done = smbcacls(target, name)
    found = re.search(r"^OWNER:(\S+)$", done.stdout, re.M)
    assert found, done.stdout + done.stderr
    return found.group(1)


def put(target, name: str) -> subprocess.CompletedProcess:
    return smbclient(target, f"put /etc/hostname {name}")


def both(hanode_server, smbd_acls):
    return {"hanode": hanode_server, "smbd": smbd_acls}


def test_set_acl_reads_back_as_on_smbd(hanode_server, smbd_acls):
    shown = {}
    for label, target in both(hanode_server, smbd_acls).items():
        assert put(target, "acl.txt").returncode == 0
        me = owner(target, "acl.txt")
        acl = f"ACL:S-1-1-0:0/0x0/{READ},ACL:{me}:0/0x0/{FULL}"
        done = smbcacls(target, "acl.txt", "-S", acl)
        assert done.returncode == 0, f"{label}: {done.stdout}{done.stderr}"
        added = smbcacls(target, "acl.txt", "-a", "ACL:S-1-5-11:1/0x0/0x00010000")
        assert added.returncode == 0, f"{label}: {added.stdout}{added.stderr}"
        shown[label] = [line.replace(me, "<owner>") for line in aces(target, "acl.txt")]
    assert shown["hanode"] == shown["smbd"]
    assert shown["hanode"] == ["ACL:S-1-5-11:1/0x0/0x00010000",
                               f"ACL:S-1-1-0:0/0x0/{READ}",
                               f"ACL:<owner>:0/0x0/{FULL}"]


def test_children_inherit_as_on_smbd(hanode_server, smbd_acls):
    shown = {}
    for label, target in both(hanode_server, smbd_acls).items():
        assert smbclient(target, "mkdir inh").returncode == 0
        acl = f"ACL:S-1-1-0:0/OI|CI/{FULL},ACL:S-1-5-11:0/OI|IO/{READ}"
        done = smbcacls(target, "inh", "-S", acl)
        assert done.returncode == 0, f"{label}: {done.stdout}{done.stderr}"
        assert put(target, "inh/f.txt").returncode == 0
        assert smbclient(target, "mkdir inh/sub").returncode == 0
        shown[label] = (aces(target, "inh/f.txt"), aces(target, "inh/sub"))
    assert shown["hanode"] == shown["smbd"]
    # smbcacls -S sets a DACL not marked auto-inherited: the ACEs pass on unmarked.
    assert shown["hanode"][0] == [f"ACL:S-1-1-0:0/0x0/{FULL}",
                                  f"ACL:S-1-5-11:0/0x0/{READ}"]
    assert shown["hanode"][1] == [f"ACL:S-1-1-0:0/0x3/{FULL}", f"ACL:S-1-5-11:0/0x9/{READ}"]


def test_hanode_enforces_the_dacl(hanode_server):
    target = hanode_server
    assert put(target, "ro.txt").returncode == 0
    assert smbcacls(target, "ro.txt", "-S", f"ACL:S-1-1-0:0/0x0/{READ}").returncode == 0
    assert smbclient(target, "get ro.txt /dev/null").returncode == 0
    refused = put(target, "ro.txt")
    assert "NT_STATUS_ACCESS_DENIED" in refused.stdout + refused.stderr
    # The owner may always rewrite the DACL (READ_CONTROL and WRITE_DAC are implicit).
    assert smbcacls(target, "ro.txt", "-S", f"ACL:S-1-1-0:0/0x0/{FULL}").returncode == 0
    assert put(target, "ro.txt").returncode == 0
    # Nobody but the owner: smbcacls itself (READ_CONTROL) still reads it.
    assert smbcacls(target, "ro.txt", "-S", "ACL:S-1-5-7:0/0x0/0x1").returncode == 0
    assert aces(target, "ro.txt") == ["ACL:S-1-5-7:0/0x0/0x00000001"]
    gone = smbclient(target, "get ro.txt /dev/null")
    assert "NT_STATUS_ACCESS_DENIED" in gone.stdout + gone.stderr


def test_owner_can_only_be_set_to_oneself(hanode_server):
    target = hanode_server
    assert put(target, "own.txt").returncode == 0
    me = owner(target, "own.txt")
    assert smbcacls(target, "own.txt", "-C", me).returncode == 0
    refused = smbcacls(target, "own.txt", "-C", "S-1-5-32-544")
    assert refused.returncode != 0
    assert "NT_STATUS_INVALID_OWNER" in refused.stdout + refused.stderr
    assert owner(target, "own.txt") == me


# smb2.acls subtests hanode passes though the acl_xattr smbd (its user root
# holds every privilege, which the tests do not expect) does not.
BEYOND_SMBD = ("CREATOR", "DENY1", "DYNAMIC", "GENERIC", "INHERITANCE", "MXAC-NOT-GRANTED", "OWNER",
               "OWNER-RIGHTS",
               "OWNER-RIGHTS-DENY", "OWNER-RIGHTS-DENY1")


@pytest.mark.smbtorture
def test_smbtorture_acls_parity(etcd_server, tmp_path):
    """smbtorture's smb2.acls: every subtest the smbd keeping NT ACLs passes
    (INHERITFLAGS, SDFLAGSVSCHOWN) passes here, and those listed above too."""
    smbd = harness.start_smbd(tmp_path / "smbd", share_extra=SMBD_ACLS)
    try:
        theirs = harness.run_smbtorture(smbd, "smb2.acls", timeout=300)
    finally:
        harness.stop(smbd)
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode") as target:
        ours = harness.run_smbtorture(target, "smb2.acls", timeout=300)
    harness.assert_parity(ours, theirs)
    missing = [t for t in BEYOND_SMBD if ours.results.get(t) != "success"]
    assert not missing, f"{missing}\n{ours.output[-4000:]}"


def test_share_root_is_checked_against_its_descriptor(hanode_server):
    target = hanode_server
    assert smbcacls(target, "\\", "-S", f"ACL:S-1-1-0:0/0x0/{READ}").returncode == 0
    assert aces(target, "\\") == [f"ACL:S-1-1-0:0/0x0/{READ}"]
    refused = put(target, "new.txt")  # writing the root needs FILE_ADD_FILE
    assert "NT_STATUS_ACCESS_DENIED" in refused.stdout + refused.stderr
    assert smbcacls(target, "\\", "-S", f"ACL:S-1-1-0:0/0x0/{FULL}").returncode == 0
    assert put(target, "new.txt").returncode == 0
    # Opening the root itself: listing it needs more than the owner's implicit
    # READ_CONTROL and WRITE_DAC, which still let smbcacls read the DACL.
    assert smbcacls(target, "\\", "-S", "ACL:S-1-5-7:0/0x0/0x1").returncode == 0
    listed = smbclient(target, "ls")
    assert "NT_STATUS_ACCESS_DENIED" in listed.stdout + listed.stderr
    assert aces(target, "\\") == ["ACL:S-1-5-7:0/0x0/0x00000001"]
