"""The sync batch messages between gateways and workers: what goes in comes out, and anything
else is refused with ValueError (never unpickled, never half-read)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from aiaas.ml.explain import Explanation
from aiaas.serving import wire

SPEC = {"key": "abc", "architecture": "mlp", "input_shape": [4]}


def test_batch_round_trip() -> None:
    inputs = np.arange(12, dtype=np.float64).reshape(3, 4)
    raw = wire.pack_batch(SPEC, inputs, reply_to="r", batch_id="b1", sent=10.5, deadline=40.5)
    message = wire.unpack_batch(raw)
    assert message.spec == SPEC
    assert (message.reply_to, message.batch_id, message.sent, message.deadline) == (
        "r",
        "b1",
        10.5,
        40.5,
    )
    assert message.inputs.dtype == np.float32
    np.testing.assert_array_equal(message.inputs, inputs.astype(np.float32))


def test_replies_round_trip() -> None:
    outputs = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    ok = wire.read_reply(wire.reply_ok("b1", outputs, 0.002))
    assert (ok.batch_id, ok.error, ok.compute_s) == ("b1", None, 0.002)
    assert ok.outputs is not None
    np.testing.assert_array_equal(ok.outputs, outputs)

    failed = wire.read_reply(wire.reply_error("b2", "ValueError: no such model"))
    assert (failed.batch_id, failed.outputs, failed.error) == (
        "b2",
        None,
        "ValueError: no such model",
    )


def test_keys_are_per_queue() -> None:
    assert wire.batch_key("predict") == "aiaas:batches:predict"
    assert wire.batch_key("predict") != wire.batch_key("training")


def _header(**fields: object) -> bytes:
    return orjson.dumps(fields) + wire.SEPARATOR


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"no separator at all", "separator"),
        (b"{not json\n", "header"),
        (b"[1, 2]\n", "not an object"),
        (_header(shape=[2, 2]) + b"\x00" * 15, "bytes for shape"),
        (_header(shape=[2, -1]), "bad shape"),
        (_header(shape="2x2"), "bad shape"),
        (_header(shape=[1.5]), "bad shape"),
    ],
)
def test_malformed_messages_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        wire.unpack_batch(raw)
    with pytest.raises(ValueError, match=reason):
        wire.read_reply(raw)


def test_a_batch_without_its_fields_is_refused() -> None:
    raw = _header(shape=[1, 2], spec=SPEC) + np.zeros(2, dtype="<f4").tobytes()
    with pytest.raises(ValueError, match="not a batch message"):
        wire.unpack_batch(raw)


def test_a_successful_reply_needs_outputs() -> None:
    with pytest.raises(ValueError, match="without outputs"):
        wire.read_reply(_header(id="b", ok=True, compute_s=0.1))
    with pytest.raises(ValueError, match="not a reply"):
        wire.read_reply(_header(ok=False))


def test_explain_request_round_trip_through_json() -> None:
    inputs = np.arange(6, dtype=np.float64).reshape(1, 2, 3)
    options = {"method": "saliency", "target": 1, "steps": 50}
    packed = wire.pack_explain(
        SPEC, inputs, options, reply_to="r", request_id="e1", sent=1.5, deadline=31.5
    )
    # Celery's JSON serializer carries it: plain JSON types only.
    message, got = wire.unpack_explain(orjson.loads(orjson.dumps(packed)))
    assert (message.spec, got) == (SPEC, options)
    assert (message.reply_to, message.batch_id, message.sent, message.deadline) == (
        "r",
        "e1",
        1.5,
        31.5,
    )
    assert message.inputs.dtype == np.float32
    np.testing.assert_array_equal(message.inputs, inputs.astype(np.float32))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"inputs": "not base64!"}, "not an explain message"),
        ({"shape": [1, 2, 4]}, "bytes for shape"),
        ({"shape": [-1]}, "bad shape"),
        ({"reply_to": None, "spec": None}, "not an explain message"),
    ],
)
def test_malformed_explain_requests_are_refused(change: dict[str, object], reason: str) -> None:
    packed = wire.pack_explain(
        SPEC, np.zeros((1, 2, 3)), {}, reply_to="r", request_id="e1", sent=0, deadline=1
    )
    with pytest.raises(ValueError, match=reason):
        wire.unpack_explain({**packed, **change})
    with pytest.raises(ValueError, match="not an explain message"):
        wire.unpack_explain(["a list"])


def test_an_explanation_reply_round_trips() -> None:
    sent = Explanation(
        attributions=np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32),
        outputs=np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32),
        targets=np.array([1, 0]),
        completeness_gap=np.array([1e-4, -2e-5], dtype=np.float32),
    )
    reply = wire.read_reply(wire.reply_explained("e1", sent, 0.5))
    assert (reply.batch_id, reply.error, reply.compute_s) == ("e1", None, 0.5)
    got = wire.read_explanation(reply)
    np.testing.assert_array_equal(got.attributions, sent.attributions)
    np.testing.assert_array_equal(got.outputs, sent.outputs)
    assert got.targets.tolist() == [1, 0]
    assert got.completeness_gap is not None
    np.testing.assert_array_equal(got.completeness_gap, sent.completeness_gap)
    without_gap = wire.read_reply(
        wire.reply_explained(
            "e2", Explanation(sent.attributions, sent.outputs, sent.targets, None), 0
        )
    )
    assert wire.read_explanation(without_gap).completeness_gap is None
    # A batch's reply carries no explanation.
    plain = wire.read_reply(wire.reply_ok("b1", sent.outputs, 0.1))
    with pytest.raises(ValueError, match="no explanation"):
        wire.read_explanation(plain)
