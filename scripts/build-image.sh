#!/usr/bin/env bash
# Build the hanode container image with podman, from Debian packages and this
# checkout only: no image registry is asked for anything.
#
#   layer 1  a Debian bookworm base made with debootstrap --variant=minbase from
#            the Debian mirror apt uses here (python3, python3-venv, iproute2,
#            nftables, tini, etcd-server), security updates applied, caches and
#            logs removed, written as a sorted tar with clamped times and
#            `podman import`ed.  Cached under the state directory, keyed by its
#            inputs: the next build with the same inputs takes seconds.
#   layer 2  hanode's wheel (built from the tracked files of this checkout,
#            uncommitted edits included) and its dependencies in a virtualenv
#            /opt/hanode/venv (deploy/container/Containerfile).
#
# Reproducible: a fixed SOURCE_DATE_EPOCH (the checkout's commit time) for
# wheel, layer times and image dates; the same inputs give the same layer
# digests (scripts/build-image.sh --print-layers shows them).
#
# Usage: scripts/build-image.sh [--refresh-base] [--print-layers]
#   IMAGE (default localhost/hanode:latest)  the tag to build
#   HANODE_IMAGE_STATE (default /var/cache/hanode-image)  base and wheel cache
#   HANODE_DEBIAN_MIRROR  a Debian mirror (default: the one apt uses here)
# Run as root (debootstrap, podman).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

IMAGE=${IMAGE:-localhost/hanode:latest}
# crun refuses hosts with both cgroup v1 and a cgroup2 mount (hybrid); runc does not.
RUNTIME=${HANODE_OCI_RUNTIME:-runc}
STATE=${HANODE_IMAGE_STATE:-/var/cache/hanode-image}
SUITE=bookworm
PACKAGES=(python3 python3-venv iproute2 nftables tini etcd-server)
# Times in the base are clamped to this (files from packages keep their own,
# older times, so the byte-compiled Python of the packages stays valid).
BASE_EPOCH=1767225600  # 2026-01-01
refresh_base=0 print_layers=0
for arg in "$@"; do
  case $arg in
    --refresh-base) refresh_base=1 ;;
    --print-layers) print_layers=1 ;;
    *) echo "build-image.sh: unknown argument $arg (--refresh-base, --print-layers)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (debootstrap, podman)" >&2; exit 2; }
for tool in debootstrap podman git; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool is not installed (scripts/setup.sh installs it)" >&2; exit 2; }
done

apt_mirror() {  # the first Debian archive apt is configured with
  local uri
  uri=$(grep -h -o -E 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list 2>/dev/null | head -n1 | tr -d ' ' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${HANODE_DEBIAN_MIRROR:-$(apt_mirror)}
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${MIRROR%/debian}/debian-security
ARCH=$(dpkg --print-architecture)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

work=$(mktemp -d "${TMPDIR:-/tmp}/hanode-image.XXXXXX")
cleanup() {
  # debootstrap mounts /proc and /sys in its target; a failed run leaves them.
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

make_base() {  # $1: the tar to write
  local root=$work/rootfs
  debootstrap --variant=minbase --arch="$ARCH" --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; echo "build-image.sh: debootstrap failed" >&2; return 1; }
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  mount -t proc proc "$root/proc"
  chroot "$root" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq &&
    apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade >/dev/null && apt-get clean' \
    >>"$work/debootstrap.log" 2>&1 \
    || { umount "$root/proc"; tail -n 20 "$work/debootstrap.log" >&2; echo "build-image.sh: apt-get dist-upgrade in the base failed" >&2; return 1; }
  umount "$root/proc"
  # What differs from one build to the next and nobody needs in the image.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
         "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/aux-cache "$root"/var/log/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/usr/share/locale/* "$root"/etc/ssh/ssh_host_* "$root"/root/.cache
  : >"$root/etc/machine-id"
  rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
  # Password ages count days: the day of the build is not an input.
  sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$((BASE_EPOCH / 86400)):/" "$root/etc/shadow" "$root/etc/shadow-" 2>/dev/null || true
  tar --sort=name --numeric-owner --format=posix --mtime="@$BASE_EPOCH" --clamp-mtime \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      --xattrs --xattrs-include='security.capability' \
      -C "$root" -cf "$1" .
}

# -- layer 1: the base ---------------------------------------------------------------
base_key=$( { echo "$SUITE $ARCH $MIRROR $BASE_EPOCH ${PACKAGES[*]}"; declare -f make_base; } \
            | sha256sum | cut -c1-16)
base_tar=$STATE/base-$base_key.tar
mkdir -p "$STATE"
t0=$(date +%s)
if [ "$refresh_base" = 1 ] || [ ! -s "$base_tar" ] || [ ! -s "$base_tar.sha256" ]; then
  echo "build-image.sh: making the Debian $SUITE base (debootstrap from $MIRROR)"
  make_base "$work/base.tar"
  sha256sum "$work/base.tar" | cut -d' ' -f1 >"$work/base.tar.sha256"
  mv "$work/base.tar" "$base_tar"
  mv "$work/base.tar.sha256" "$base_tar.sha256"
fi
# Tagged by its content: a remade base that came out the same is the same image.
base_image=localhost/hanode-base:$(cut -c1-16 "$base_tar.sha256")
if ! podman image exists "$base_image"; then
  podman import --quiet --message "debootstrap $SUITE minbase + ${PACKAGES[*]}" \
    "$base_tar" "$base_image" >/dev/null
fi
echo "build-image.sh: base $base_image ($(du -h "$base_tar" | cut -f1), $(( $(date +%s) - t0 )) s)"

# -- layer 2: hanode in a virtualenv --------------------------------------------------
# The tracked files as they are now (a commit object that includes uncommitted edits).
tree=$(git stash create 2>/dev/null || true)
git archive --format=tar.gz --prefix=hanode/ --output="$work/hanode-src.tar.gz" "${tree:-HEAD}"
mkdir -p "$work/context/wheels" "$STATE/wheels"
# Dependencies' wheels are kept between builds (a wheel compiled here embeds
# its build directory, so rebuilding one would change the layer); hanode's own
# is built from the source every time.
/usr/bin/python3 -m pip wheel --quiet --disable-pip-version-check --find-links="$STATE/wheels" \
  --wheel-dir="$work/context/wheels" "$work/hanode-src.tar.gz"
find "$work/context/wheels" -name '*.whl' ! -name 'hanode-*' -exec cp -n {} "$STATE/wheels/" \;
cp deploy/container/Containerfile "$work/context/Containerfile"
podman --runtime "$RUNTIME" build --quiet --layers=false --network none --timestamp "$SOURCE_DATE_EPOCH" \
  --build-arg BASE="$base_image" --build-arg SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
  --tag "$IMAGE" "$work/context" >/dev/null
echo "build-image.sh: built $IMAGE in $(( $(date +%s) - t0 )) s ($(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec) )"
if [ "$print_layers" = 1 ]; then
  podman image inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d'
fi
