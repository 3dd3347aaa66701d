"""Which node ``hanode switchover`` moves to, and what it refuses."""

from __future__ import annotations

import pytest

from hanode.cli import UserError
from hanode.switchover import choose_target


def node(name: str, state: str = "standby", workers=None) -> dict:
    return {"name": name, "state": state, "workers": workers or []}


NODES = [node("n1", "leader"), node("n2"), node("n3", "down")]


def test_named_standby_is_taken():
    assert choose_target(NODES, "n1", "n2") == "n2"


@pytest.mark.parametrize("to,problem", [("n9", "unknown node 'n9' (nodes: n1, n2, n3)"),
                                        ("n3", "node 'n3' is down"),
                                        ("n1", "'n1' is already the leader")])
def test_refusals_name_the_problem(to, problem):
    with pytest.raises(UserError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        choose_target(NODES, "n1", to)


def test_healthiest_standby_has_all_workers_then_fewest_restarts():
    nodes = [node("n1", "leader"),
             node("n2", workers=[{"pid": None, "restarts": 0}, {"pid": 5, "restarts": 0}]),
             node("n3", workers=[{"pid": 6, "restarts": 4}, {"pid": 7, "restarts": 0}]),
             node("n4", workers=[{"pid": 8, "restarts": 1}, {"pid": 9, "restarts": 0}]),
             node("n5", "down")]
    assert choose_target(nodes, "n1", None) == "n4"


def test_no_standby_up_is_refused():
    with pytest.raises(UserError, match="no standby"):
        choose_target([node("n1", "leader"), node("n2", "down")], "n1", None)
