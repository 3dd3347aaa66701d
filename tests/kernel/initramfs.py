"""The kernel-client lab's initramfs: busybox, the guest's init and the kernel
modules the cifs client and a virtio NIC need, as an uncompressed newc cpio.

The kernel comes from Debian's linux-image package as unpacked by
``fetch_kernel.sh``; the modules are taken with everything ``modules.dep``
says they need, so the guest's ``modprobe`` (busybox) finds them.

    python tests/kernel/initramfs.py OUT.cpio     # build one by hand
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

KERNEL_DIR = Path(os.environ.get("HANODE_KERNEL_DIR", "/var/cache/hanode-kernel")) / "current"
INIT = Path(__file__).with_name("guest_init.sh")

# Loaded at boot, in this order.  cifs asks the crypto API for these
# algorithms when it signs or seals; loading them up front keeps the first
# mount free of module-loading surprises.
MODULES = ("virtio_pci", "virtio_net", "ecb", "ctr", "cmac", "ccm", "gcm", "ghash-generic",
           "sha512_generic", "cifs")


class InitramfsError(Exception):
    """Something the initramfs needs is missing; the message says what."""


@dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel: vmlinuz and the module tree."""

    root: Path

    @property
    def release(self) -> str:
        return (self.root / "release").read_text().strip()

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def find_kernel(root: Path = KERNEL_DIR) -> Kernel:
    kernel = Kernel(root.resolve())
    if not (root / "release").exists() or not kernel.vmlinuz.exists():
        raise InitramfsError(f"no unpacked kernel in {root}: run tests/kernel/fetch_kernel.sh "
                             f"(scripts/setup.sh does)")
    return kernel


def module_closure(modules_dep: str, names: tuple[str, ...]) -> list[str]:
    """The module files (paths relative to the module tree) that ``names``
    need, each after what it depends on.  ``-`` and ``_`` are one in module names."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        for dep in deps.get(path, []):
            visit(dep)
        ordered.append(path)

    for name in names:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            raise InitramfsError(f"module {name} is not in modules.dep")
        visit(path)
    return ordered


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.replace("-", "_")


class Cpio:
    """A newc archive written entry by entry (what the kernel unpacks as initramfs)."""

    def __init__(self, out) -> None:
        self._out = out
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        encoded = name.encode() + b"\0"
        header = ("070701" + "%08x" * 13) % (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        self._ino += 1
        self._out.write(header.encode() + encoded)
        self._out.write(b"\0" * (-(110 + len(encoded)) % 4))
        self._out.write(data)
        self._out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in self._dirs:
                self._dirs.add(sub)
                self._entry(sub, stat.S_IFDIR | 0o755, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        if "/" in name:
            self.directory(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self) -> None:
        self._entry("TRAILER!!!", 0, b"")


def busybox_applets(busybox: str) -> list[str]:
    return subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                          check=True).stdout.split()


def build(out: Path, kernel: Kernel | None = None) -> Path:
    """Write the initramfs to ``out``; returns ``out``."""
    kernel = kernel or find_kernel()
    busybox = shutil.which("busybox")
    if busybox is None:
        raise InitramfsError("busybox not found: install busybox-static (scripts/setup.sh)")
    modules = module_closure((kernel.modules / "modules.dep").read_text(), MODULES)
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as f:
        archive = Cpio(f)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "mnt",
                  "etc", "root"):
            archive.directory(d)
        archive.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in busybox_applets(busybox):
            if applet != "bin/busybox":
                archive.symlink(applet, "/bin/busybox")
        archive.file("init", INIT.read_bytes(), 0o755)
        archive.file("etc/hkc-modules", "\n".join(MODULES).encode() + b"\n")
        base = f"lib/modules/{kernel.release}"
        for meta in ("modules.dep", "modules.alias", "modules.symbols", "modules.builtin",
                     "modules.order"):
            archive.file(f"{base}/{meta}", (kernel.modules / meta).read_bytes())
        for rel in modules:
            archive.file(f"{base}/{rel}", (kernel.modules / rel).read_bytes())
        archive.close()
    tmp.replace(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: initramfs.py OUT.cpio")
    try:
        print(build(Path(sys.argv[1])))
    except InitramfsError as exc:
        sys.exit(f"initramfs: {exc}")
