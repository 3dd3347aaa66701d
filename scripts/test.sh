#!/usr/bin/env bash
# Run every test (unit, integration with a real etcd, cluster tests in network
# namespaces, SMB tests with smbclient/smbtorture/smbprotocol) after installing
# what they need.  Extra arguments go to pytest, e.g. `scripts/test.sh -m cluster`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (tests create network namespaces)" >&2; exit 2; }
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
