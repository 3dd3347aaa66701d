"""The deferred write-time decisions of one handle (smb.writetime)."""

from smb.writetime import UPDATE_DELAY_NS, Deferred


def test_first_write_keeps_the_time_and_makes_the_move_due():
    d = Deferred()
    assert d.wrote(now_ns=100, before_ns=5_000) == 5_000
    assert d.due_ns == 100 + UPDATE_DELAY_NS and d.pending


def test_later_writes_keep_the_time_without_a_new_delay():
    d = Deferred()
    d.wrote(now_ns=100, before_ns=5_000)
    assert d.wrote(now_ns=200, before_ns=9_999) == 5_000
    assert d.due_ns == 100 + UPDATE_DELAY_NS


def test_a_move_ends_the_delay_and_later_writes_keep_the_moved_time():
    d = Deferred()
    d.wrote(now_ns=100, before_ns=5_000)
    d.moved(7_000)
    assert (d.shown_ns, d.due_ns, d.pending) == (7_000, None, False)
    assert d.wrote(now_ns=300, before_ns=8_000) == 7_000
    assert d.due_ns is None and d.pending  # the close moves it now


def test_a_handle_that_never_wrote_has_nothing_pending():
    assert not Deferred().pending
