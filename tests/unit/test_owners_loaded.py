"""When a new leader may add the VIP: once its workers loaded the dead workers'
opens from the set of live workers it sees (hanode.takeover.workers_loaded)."""

from hanode.store import Entry
from hanode.takeover import workers_loaded
from smb.durable import live_of, owners_digest

P = "/hanode/c/workers/"


def key(node: str, worker: str, value: object) -> Entry:
    return Entry(f"{P}{node}/{worker}", value, 1, 1, 0)


def test_live_set_names_keys_and_incarnations():
    entries = [key("n1", "w0", {"identity": "a@1"}), key("n2", "w0", None)]
    assert live_of(entries) == {f"{P}n1/w0", "a@1", f"{P}n2/w0"}


def test_digest_is_of_the_set_not_its_order():
    assert owners_digest(frozenset({"a", "b"})) == owners_digest(frozenset({"b", "a"}))
    assert owners_digest(frozenset({"a"})) != owners_digest(frozenset({"a", "b"}))


def test_waits_for_every_worker_of_this_node_to_have_loaded_the_current_set():
    others = [key("n2", "w0", {"identity": "b@2"})]
    ids = [{"identity": "a@1"}, {"identity": "a@2"}]
    mine = [key("n1", f"w{i}", v) for i, v in enumerate(ids)]
    current = owners_digest(live_of(others + mine))
    # Not yet: one worker still has the set from before (the dead node's keys in it).
    stale = owners_digest(live_of(others + mine + [key("n3", "w0", {"identity": "x@9"})]))
    loaded = [key("n1", "w0", {**ids[0], "owners": current}),
              key("n1", "w1", {**ids[1], "owners": stale})]
    assert not workers_loaded(others + loaded, f"{P}n1/")
    loaded[1] = key("n1", "w1", {**ids[1], "owners": current})
    assert workers_loaded(others + loaded, f"{P}n1/")
    # A worker that has not loaded at all yet is waited for too.
    assert not workers_loaded(others + [key("n1", "w0", {**ids[0], "owners": None}),
                                        loaded[1]], f"{P}n1/")
    # Other nodes' workers are not waited for; nor one of an older version.
    assert workers_loaded([key("n2", "w0", {"identity": "b@2", "owners": "old"}),
                           key("n1", "w0", {"identity": "a@1"})], f"{P}n1/")
    assert workers_loaded([], f"{P}n1/")  # no workers (yet): nothing to wait for
