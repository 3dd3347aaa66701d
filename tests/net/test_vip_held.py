"""VipOwner.held against a real kernel in a namespace: a VIP found held must
not hide that another VIP's interface cannot be read (the agent logs it)."""

from __future__ import annotations

import json
import sys

_HELD = """
import json, logging, sys, trio
from hanode import config
from hanode.takeover import VipOwner

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("hanode.takeover").addHandler(Keep())
cfg = config.parse({"node": {"name": "n1"}, "cluster": {"etcd": ["http://127.0.0.1:1"]},
                    "vip": [{"address": a, "interface": i} for a, i in json.loads(sys.argv[1])]})

async def main():
    async with trio.open_nursery() as nursery:
        held = await VipOwner("n1", cfg, None, nursery).held()
        nursery.cancel_scope.cancel()
    print(json.dumps({"held": held, "log": records}))

trio.run(main)
"""


def test_held_reads_every_vip_after_one_that_is_held(pair):
    lab, (a, if_a), _ = pair
    lab.addr(a, if_a, "10.9.0.50/24")  # the first VIP is on its interface
    vips = [("10.9.0.50/24", if_a), ("10.9.0.51/24", "hanode-nosuch0")]
    out = json.loads(lab.run("ip", "netns", "exec", a, sys.executable, "-c", _HELD,
                             json.dumps(vips)))
    assert out["held"] is True
    assert any("hanode-nosuch0" in line for line in out["log"]), out
