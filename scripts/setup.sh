#!/usr/bin/env bash
# Install what hanode, its demo and its tests need on Debian 12, as root:
# the Debian packages and the Python package (with test extras) in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(etcd-server etcd-client iproute2 nftables smbclient samba samba-testsuite
              python3-venv tcpdump
              ansible ansible-lint systemd python3-pip git)
APT_PACKAGES+=(podman debootstrap runc iptables)  # issue 16: the container image, its demo and tests
APT_PACKAGES+=(bindfs)  # issue 11: a FUSE passthrough whose daemon a test stops (hung storage)
APT_PACKAGES+=(qemu-system-x86 busybox-static)  # issue 17: the kernel-client lab (tests/kernel)
APT_PACKAGES+=(fuse3 libfuse2)  # issue 14: hanode.volatile_fs (mfusepy loads libfuse2), the lab storage that loses unsynced writes
APT_PACKAGES+=(samba-vfs-modules)  # issue 17: acl_xattr, so the smbd beside hanode in tests/smb/test_acls.py keeps NT ACLs as set
APT_PACKAGES+=(strace)  # issue 14: tests/smb/test_durable_names.py watches the worker fsync a CA share's directory

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts the packaged etcd and smbd at install; hanode starts its own.
for unit in etcd smbd nmbd samba-ad-dc; do
  systemctl disable --now "$unit" >/dev/null 2>&1 || true
done

# issue 17: the Debian kernel the kernel-client lab boots (unpacked, not installed).
bash tests/kernel/fetch_kernel.sh

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e ".[test]"
