"""``hanode smb``: only this node's SMB workers, no election and no VIP.

The parent process of the workers: the agent's supervisor keeps them
(started, restarted, stopped) as it does under the agent; with no store it
measures nothing, as nobody reads its figures here.  It lives on the agent's
side so that the worker (smb.worker) never imports the supervisor.
"""

from __future__ import annotations

import trio

from hanode.config import Config
from hanode.supervisor import Supervisor
from smb.worker import check_config, setup_logging, until_signalled


def main(cfg: Config) -> int:
    check_config(cfg)
    setup_logging(cfg, "smb")
    trio.run(until_signalled, f"stopping {cfg.smb.workers} workers", Supervisor(cfg).run)
    return 0
