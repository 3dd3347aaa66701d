"""``hanode smb``: only this node's SMB workers, no election and no VIP.

The parent process of the workers: the agent's supervisor keeps them
(started, restarted, stopped) as it does under the agent, with the cluster's
etcd when the config names one, so that a dead worker's liveness key goes at
once and the other workers hold its persistent opens without waiting for the
key's lease to end.  It lives on the agent's side so that the worker
(smb.worker) never imports the supervisor.
"""

from __future__ import annotations

import trio

from hanode.config import Config
from hanode.store import Store
from hanode.supervisor import Supervisor
from smb.worker import check_config, setup_logging, until_signalled


def main(cfg: Config) -> int:
    check_config(cfg)
    setup_logging(cfg, "smb")
    store = Store.from_config(cfg.cluster, cfg.cluster.etcd) if cfg.cluster.etcd else None
    try:
        trio.run(until_signalled, f"stopping {cfg.smb.workers} workers",
                 Supervisor(cfg, store).run)
    finally:
        if store is not None:
            store.close()
    return 0
