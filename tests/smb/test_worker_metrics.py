"""SMB workers count their operations, bytes and connections where the agent's
/metrics page reads them (prometheus_client multiprocess files)."""

from __future__ import annotations

import re

import harness
from hanode.metrics import MULTIPROC_ENV, Metrics


def _value(page: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", page, re.MULTILINE)
    assert match, f"{series} missing from:\n{page}"
    return float(match.group(1))


def test_worker_counts_reach_the_agents_page(etcd_server, tmp_path):
    worker_dir = tmp_path / "metrics"
    agent_page = Metrics(worker_dir)  # as the agent does: before its workers start
    target = harness.start_hanode(etcd_server.url, tmp_path / "hanode", workers=2,
                                  env={MULTIPROC_ENV: str(worker_dir)})
    try:
        (target.share / "a.txt").write_bytes(b"x" * 5000)
        done = harness.smbclient(target, "ls; get a.txt /dev/null")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        harness.stop(target)
    page = agent_page.render().decode()
    for command in ("NEGOTIATE", "SESSION_SETUP", "TREE_CONNECT", "CREATE",
                    "QUERY_DIRECTORY", "READ"):
        assert _value(page, f'hanode_smb_operations_total{{command="{command}"}}') >= 1
    assert _value(page, 'hanode_smb_bytes_total{command="READ",direction="out"}') >= 5000
    assert _value(page, 'hanode_smb_bytes_total{command="CREATE",direction="in"}') > 64
