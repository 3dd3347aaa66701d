#!/usr/bin/env bash
# The failover experiment of `hanode demo` with every node in a podman
# container: etcd and three hanode node containers on a podman network of
# their own (10.78.<n>.0/24), one shared directory bind-mounted into each,
# clients in a network namespace on the same bridge copying files to
# \\VIP\test; the serving container is killed (podman kill) mid-copy, then
# removed and started again as a scheduler would.  Prints the same phase
# timings as `hanode demo`; exit 0 only when every copy matched and the
# restarted node came back as a standby.  Everything it made is removed on
# any exit.
#
# Usage: scripts/container-demo.sh [--size 64M] [--clients 3] [--nodes 3]
#                                  [--kill podman-kill|podman-stop]
# Builds the image first (scripts/build-image.sh; cached, so fast after the
# first time).  Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "container-demo.sh: run as root (podman, network namespaces)" >&2; exit 2; }
[ -x .venv/bin/python ] || bash scripts/setup.sh
export IMAGE=${IMAGE:-localhost/hanode:latest}
bash scripts/build-image.sh
exec .venv/bin/python scripts/container_demo.py --image "$IMAGE" "$@"
