from smb.server.credits import CreditWindow, charge_refused, expected_payload, required_charge
from smb.wire.crypto import Dialect
from smb.wire.header import Command


def test_new_connection_has_one_credit():
    w = CreditWindow()
    assert w.available == 1
    assert not w.consume(1, 1)
    assert w.consume(0, 1)
    assert not w.consume(0, 1)  # no replay
    assert w.available == 0


def test_grant_is_bounded_and_never_leaves_zero():
    w = CreditWindow(max_credits=100)
    w.consume(0, 1)
    assert w.grant(0) == 1
    assert w.grant(1000) == 99
    assert w.available == 100
    assert w.grant(5) == 0


def test_out_of_order_and_multi_credit():
    w = CreditWindow()
    w.consume(0, 1)
    w.grant(10)
    assert w.consume(5, 4)      # ids 5..8
    assert not w.consume(8, 2)  # 8 already spent
    assert not w.consume(9, 3)  # 11 was never granted
    assert w.consume(1, 4)
    assert w.low == 9 and w.available == 2


def test_charge_rules():
    assert required_charge(0) == 1
    assert required_charge(65536) == 1
    assert required_charge(65537) == 2
    assert required_charge(8 * 1024 * 1024) == 128
    read = bytes(4) + (1 << 20).to_bytes(4, "little")
    assert expected_payload(0x08, read) == 1 << 20
    assert expected_payload(0x08, b"\x00") == 0  # truncated bodies are the handler's problem


def test_charge_refused_on_request_bodies():
    """READ bodies as a client sends them: Length at offset 4."""
    def read(length: int) -> bytes:
        return bytes(4) + length.to_bytes(4, "little") + bytes(41)

    big = read(256 * 1024)  # four credits' worth
    assert charge_refused(Dialect.SMB_3_1_1, Command.READ, 3, big)
    assert not charge_refused(Dialect.SMB_3_1_1, Command.READ, 4, big)
    assert charge_refused(Dialect.SMB_3_1_1, Command.READ, 0, big)  # 0 covers 64 KiB only
    assert not charge_refused(Dialect.SMB_3_1_1, Command.READ, 0, read(65536))
    assert not charge_refused(Dialect.SMB_2_0_2, Command.READ, 0, big)  # no charges in 2.0.2
    assert not charge_refused(Dialect.SMB_2_1, Command.ECHO, 0, bytes(4))

