#!/usr/bin/env bash
# The failover demo on one machine (as root): installs what it needs, then runs
# a two-node cluster in network namespaces, kills its leader hard and shows the
# VIP move.  `hanode demo` will replace this.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (the demo creates network namespaces)" >&2; exit 2; }
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
