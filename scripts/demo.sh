#!/usr/bin/env bash
# The failover demo on one machine (as root): installs what it needs, then runs
# `hanode demo` (network namespaces: etcd, nodes, clients copying files while
# the serving node dies).  Options are passed on, e.g. --kill switchover --size 64M.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (the demo creates network namespaces)" >&2; exit 2; }
scripts/setup.sh
exec .venv/bin/hanode demo "$@"
