#!/usr/bin/env bash
# The Debian kernel the kernel-client lab boots: the package linux-image-amd64
# points at, downloaded with apt and unpacked (not installed: installing a
# kernel runs initramfs and bootloader hooks this machine does not want) into
# $HANODE_KERNEL_DIR (default /var/cache/hanode-kernel)/<package>_<version>,
# with a modules.dep made by busybox's depmod.  `current` links to the newest.
set -euo pipefail
dir=${HANODE_KERNEL_DIR:-/var/cache/hanode-kernel}
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "fetch_kernel: no linux-image package behind linux-image-amd64" >&2; exit 1; }
ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
dest="$dir/${pkg}_$ver"
if [ ! -f "$dest/modules.dep.done" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q "$pkg=$ver" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  deb=$(ls "$tmp"/*.deb)
  dpkg-deb -x "$deb" "$tmp/root"
  release=${pkg#linux-image-}
  busybox depmod -b "$tmp/root" "$release"
  rm -rf "$dest"
  mv "$tmp/root" "$dest"
  echo "$release" > "$dest/release"
  touch "$dest/modules.dep.done"
fi
ln -sfn "$dest" "$dir/current"
