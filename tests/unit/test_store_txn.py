"""The hand-encoded etcd TxnRequest of Store.apply, checked against etcd3's own protobuf."""

from etcd3.etcdrpc import rpc_pb2

from hanode.store import txn_request


def _reference(puts, deletes) -> bytes:
    ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v)) for k, v in puts]
    ops += [rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k))
            for k in deletes]
    return rpc_pb2.TxnRequest(success=ops).SerializeToString()


def test_puts_and_deletes_encode_as_protobuf_does():
    puts = [(b"/hanode/c/durable/00000000000000ff", b'{"a":1}'),
            (b"/k/long", b"x" * 200),          # two-byte lengths
            (b"/k/longer", b"y" * 20_000),     # three-byte lengths, nested three deep
            (b"/k/empty", b"")]
    deletes = [b"/hanode/c/durable/0123456789abcdef", b"/k/" + b"z" * 130]
    assert txn_request(puts, deletes) == _reference(puts, deletes)


def test_decodes_to_the_same_operations():
    request = rpc_pb2.TxnRequest.FromString(txn_request([(b"/a", b"1")], [b"/b"]))
    assert not request.compare and not request.failure
    put, delete = request.success
    assert (put.request_put.key, put.request_put.value) == (b"/a", b"1")
    assert delete.request_delete_range.key == b"/b"
    assert delete.request_delete_range.range_end == b""  # one key, not a range


def test_deletes_only_and_nothing():
    assert txn_request([], [b"/gone"]) == _reference([], [b"/gone"])
    assert txn_request([], []) == b""
