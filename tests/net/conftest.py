"""Fixtures of the namespace tests: a lab, and two namespaces on a veth pair."""

from __future__ import annotations

import pytest

from nslab import Lab


@pytest.fixture
def lab():
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def pair(lab):
    """Two namespaces on a veth pair, addressed in 10.9.0.0/24 and fd09::/64.

    Returns (lab, (ns_a, if_a), (ns_b, if_b)).
    """
    a, b = lab.netns("a"), lab.netns("b")
    if_a, if_b = lab.veth(a, b)
    for ns, iface, host in ((a, if_a, 1), (b, if_b, 2)):
        lab.addr(ns, iface, f"10.9.0.{host}/24")
        lab.addr(ns, iface, f"fd09::{host}/64")
    return lab, (a, if_a), (b, if_b)
