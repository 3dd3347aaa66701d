"""A two-node hanode cluster in network namespaces, its leader killed hard.

Run by scripts/demo.sh (as root).  Shows ``hanode status``, pulls the
leader's cable and SIGKILLs its processes, shows where the VIP went, how soon
the idle client was reset and where its ARP entry points, shows ``hanode
status`` again, and tears everything down.  Exit 0 when the VIP moved.
"""

from __future__ import annotations

import sys
import time

from hanode.lab import Lab, LabError, wait_for


def show_status(lab: Lab) -> None:
    print(f"\n$ hanode status --etcd {lab.etcd_url} --cluster {lab.cluster}")
    result = lab.status()
    print((result.stdout + result.stderr).rstrip())


def main() -> int:
    try:
        with Lab(2) as lab:
            print(f"lab {lab.tag}: etcd {lab.etcd_url}, nodes "
                  + ", ".join(f"{n.name} {n.ip}" for n in lab.nodes.values())
                  + f", VIP {lab.vip}, client in namespace {lab.client_ns}")
            leader = lab.start_agents()
            client = lab.hold_connection()
            print(f"{leader} holds VIP {lab.vip_ip}; "
                  f"the client has an idle connection to {lab.vip_ip}:{lab.port}")
            show_status(lab)

            survivor = next(n for n in lab.nodes if n != leader)
            print(f"\nkilling {leader} hard: cable pulled, every process SIGKILLed")
            killed = time.monotonic()
            lab.kill_node(leader)
            wait_for(lambda: lab.holds_vip(survivor), 10, f"{survivor} to claim the VIP",
                     interval=0.01)
            claimed = time.monotonic() - killed
            reset = client.wait_reset(10) - killed
            client.close()
            arp = lab.client_arp()
            print(f"VIP {lab.vip_ip} moved to {survivor} after {claimed:.2f} s; "
                  f"the client's connection was reset after {reset:.2f} s; "
                  f"its ARP entry for {lab.vip_ip} is {arp} "
                  f"({'= ' + survivor if arp == lab.mac(survivor) else 'NOT ' + survivor})")
            # Let the dead node's record expire with its lease, so status shows it down.
            time.sleep(lab.lease_ttl)
            show_status(lab)
            # The dead node's interface still carries the address; nothing can reach it.
            ok = lab.holds_vip(survivor) and arp == lab.mac(survivor)
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print("\ndemo: " + ("ok, lab torn down" if ok else "FAILED: the VIP did not move cleanly"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
