"""Tests for aiaas.ml.tensors: JSON and .npy inputs to float32 batches."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors import (
    InputShape,
    decode_json_body,
    decode_json_inputs,
    decode_npy,
    encode_npy,
    validate_batch,
)

FLAT: InputShape = (784,)
IMAGE: InputShape = (1, 8, 8)
SEQUENCE: InputShape = (None, 1)
MAX_ROWS = 4


def _example(shape: InputShape, steps: int = 5, seed: int = 0) -> npt.NDArray[np.float64]:
    dims = tuple(steps if d is None else d for d in shape)
    return np.random.default_rng(seed).standard_normal(dims)


def _body(inputs: Any, **extra: Any) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


def _npy(array: npt.NDArray[Any], *, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _body_error(body: bytes, shape: InputShape = FLAT, max_rows: int = MAX_ROWS) -> InputInvalid:
    with pytest.raises(InputInvalid) as caught:
        decode_json_body(body, shape=shape, max_rows=max_rows)
    return caught.value


def _parsed_error(value: Any, shape: InputShape = FLAT, max_rows: int = MAX_ROWS) -> InputInvalid:
    with pytest.raises(InputInvalid) as caught:
        decode_json_inputs(value, shape=shape, max_rows=max_rows)
    return caught.value


def _json_errors(value: Any, shape: InputShape = FLAT) -> list[InputInvalid]:
    """The error from the raw-body path and from the parsed path, which must agree."""
    from_body = _body_error(_body(value), shape)
    from_parsed = _parsed_error(value, shape)
    assert from_body.to_error() == from_parsed.to_error()
    return [from_body, from_parsed]


def _npy_error(body: bytes, shape: InputShape = FLAT, max_rows: int = MAX_ROWS) -> InputInvalid:
    with pytest.raises(InputInvalid) as caught:
        decode_npy(body, shape=shape, max_rows=max_rows)
    return caught.value


def _assert_batch(result: npt.NDArray[Any], expected: npt.NDArray[Any]) -> None:
    assert result.dtype == np.float32
    assert result.flags.c_contiguous
    assert result.flags.writeable
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected.astype(np.float32))


# --------------------------------------------------------------------------- JSON: accepted

SHAPES = pytest.mark.parametrize("shape", [FLAT, IMAGE, SEQUENCE], ids=["flat", "image", "rnn"])


@SHAPES
def test_json_one_example_gets_a_batch_axis(shape: InputShape) -> None:
    example = _example(shape)
    batch, rest = decode_json_body(_body(example.tolist()), shape=shape, max_rows=MAX_ROWS)
    _assert_batch(batch, example[None])
    assert rest == {}
    _assert_batch(
        decode_json_inputs(example.tolist(), shape=shape, max_rows=MAX_ROWS), example[None]
    )


@SHAPES
def test_json_list_of_examples(shape: InputShape) -> None:
    examples = np.stack([_example(shape, seed=seed) for seed in range(3)])
    batch, _ = decode_json_body(_body(examples.tolist()), shape=shape, max_rows=MAX_ROWS)
    _assert_batch(batch, examples)
    _assert_batch(decode_json_inputs(examples.tolist(), shape=shape, max_rows=MAX_ROWS), examples)


def test_json_variable_axis_takes_any_length_shared_by_the_request() -> None:
    for steps in (1, 7):
        examples = np.stack([_example(SEQUENCE, steps, seed) for seed in range(2)])
        batch, _ = decode_json_body(_body(examples.tolist()), shape=SEQUENCE, max_rows=MAX_ROWS)
        _assert_batch(batch, examples)


def test_json_body_returns_the_other_keys() -> None:
    body = _body([0.5] * 784, parameters={"top_k": 3, "normalise": True}, id="x")
    batch, rest = decode_json_body(body, shape=FLAT, max_rows=MAX_ROWS)
    assert batch.shape == (1, 784)
    assert rest == {"parameters": {"top_k": 3, "normalise": True}, "id": "x"}


def test_json_body_with_another_field_name() -> None:
    body = orjson.dumps({"instances": [[1.0, 2.0]], "inputs": "not these"})
    batch, rest = decode_json_body(body, shape=(2,), max_rows=MAX_ROWS, field="instances")
    _assert_batch(batch, np.array([[1.0, 2.0]]))
    assert rest == {"inputs": "not these"}


def test_json_integers_are_cast_to_float32() -> None:
    pixels = np.arange(784) % 256
    batch, _ = decode_json_body(_body([pixels.tolist()]), shape=FLAT, max_rows=MAX_ROWS)
    _assert_batch(batch, pixels[None])
    mixed = [1, 2.5, -3, 2**63]
    _assert_batch(decode_json_inputs(mixed, shape=(4,), max_rows=1), np.array([mixed], float))


def test_parsed_integers_beyond_64_bits_are_accepted_when_float32_holds_them() -> None:
    result = decode_json_inputs([1, 2**70], shape=(2,), max_rows=1)
    _assert_batch(result, np.array([[1.0, 2.0**70]]))


@pytest.mark.parametrize(
    "inputs",
    [
        _example(IMAGE, seed=3).tolist(),
        [[1, 2, 3], [4, 5, 6]],
        [[0.1, 2**40 + 1, -(2**62) + 3], [1e-45, 3.4e38, -3.3e38]],
        [[2**60 + 2**36 + 1, 1]],  # through float64 this integer would round twice
        [[3e38, -3e38, 7]],  # float32 holds them, but the sum of squares is over the bound
    ],
    ids=["floats", "ints", "mixed", "big-int", "large"],
)
def test_json_bodies_of_plain_numbers_decode_as_parsed_inputs_do(inputs: Any) -> None:
    # A body with no strings or booleans takes a shorter way to float32: same batch.
    shape = np.asarray(inputs).shape[1:]
    batch, _ = decode_json_body(_body(inputs), shape=shape, max_rows=MAX_ROWS)
    parsed = decode_json_inputs(inputs, shape=shape, max_rows=MAX_ROWS)
    _assert_batch(batch, parsed)


def test_json_strings_anywhere_in_the_body_still_refuse_string_inputs() -> None:
    # The keys' own quotes are the only ones the shorter way allows.
    assert _body_error(_body([[0.5, "1"]]), shape=(2,)).got == "a string"
    error = _body_error(b'{"inputs": [[0.5, "1"]], "k": 1}', shape=(2,))
    assert (error.loc, error.got) == (["inputs", 0, 1], "a string")
    # An object among the numbers; a key with an escaped quote (one quote too many: the
    # general path, with the same answer).
    batch, extra = decode_json_body(b'{"inputs": [[0.5, 1]], "k\\"": 1}', shape=(2,), max_rows=1)
    _assert_batch(batch, np.array([[0.5, 1.0]]))
    assert extra == {'k"': 1}
    error = _body_error(b'{"inputs": [[0.5, {"v": 1}]]}', shape=(2,))
    assert (error.loc, error.got) == (["inputs", 0, 1], "an object")


def test_json_true_outside_the_inputs_does_not_refuse_them() -> None:
    row = _example(FLAT)
    body = _body([row.tolist()], parameters={"return_probabilities": True, "raw": False})
    batch, _ = decode_json_body(body, shape=FLAT, max_rows=MAX_ROWS)
    _assert_batch(batch, row[None])


def test_json_zeros_and_ones_are_not_mistaken_for_booleans() -> None:
    # Booleans would read as exactly 0 or 1, so these take the per-element type check.
    row = [0.0, 1.0, 0, 1, 0.5]
    _assert_batch(decode_json_inputs(row, shape=(5,), max_rows=1), np.array([row]))
    batch, _ = decode_json_body(_body([row], flag=True), shape=(5,), max_rows=1)
    _assert_batch(batch, np.array([row]))


def test_json_values_near_the_float32_limit_are_accepted() -> None:
    # Their sum of squares overflows the fast bound, so the exact check must let them pass.
    row = [3.4e38, -3.4e38, 1.0]
    _assert_batch(decode_json_inputs(row, shape=(3,), max_rows=1), np.array([row]))


# --------------------------------------------------------------------------- JSON: body


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        (b"", ["body"], "json_invalid"),
        (b"{'inputs': [1]}", ["body"], "json_invalid"),
        (b'{"inputs": [1, 2]', ["body"], "json_invalid"),
        (b'{"inputs": [NaN, 1]}', ["body"], "json_invalid"),
        (b'{"inputs": [1e400, Infinity]}', ["body"], "json_invalid"),
        (b'{"inputs": [1e400, ', ["body"], "json_invalid"),
        (b"[[1, 2]]", ["body"], "object_type"),
        (b"3", ["body"], "object_type"),
        (b'{"input": [1, 2]}', ["body", "inputs"], "missing"),
    ],
)
def test_json_body_that_is_not_an_object_with_inputs(
    body: bytes, loc: list[str], error_type: str
) -> None:
    error = _body_error(body, shape=(2,))
    assert error.loc == loc
    assert error.type == error_type


def test_json_body_not_an_object_names_what_came() -> None:
    error = _body_error(b'"hello"')
    assert error.expected == "a JSON object"
    assert error.got == "a string"


# --------------------------------------------------------------------------- JSON: shapes


@pytest.mark.parametrize(
    ("shape", "inputs", "got"),
    [
        (FLAT, 3.5, "a number"),
        (FLAT, "1, 2", "a string"),
        (FLAT, {"x": [1]}, "an object"),
        (FLAT, [[[0.0] * 784]], "shape [1, 1, 784]"),
        (IMAGE, [[0.0] * 8] * 8, "shape [8, 8]"),
        (IMAGE, [[[[[0.0] * 8] * 8]]], "shape [1, 1, 1, 8, 8]"),
        (IMAGE, [[[[[[0.0] * 8] * 8]]]], "shape [1, 1, 1, 1, 8, ...]"),
        (SEQUENCE, [1.0, 2.0, 3.0], "shape [3]"),
    ],
)
def test_json_wrong_rank(shape: InputShape, inputs: Any, got: str) -> None:
    for error in _json_errors(inputs, shape):
        assert error.loc == ["inputs"]
        assert error.type == "shape_mismatch"
        assert error.got == got
        assert got in error.msg


def test_json_expected_shape_uses_n_for_the_batch_and_star_for_variable_axes() -> None:
    error = _json_errors([[[1.0, 2.0]]], SEQUENCE)[0]
    assert error.expected == "shape [n, *, 1] or [*, 1]"
    assert error.got == "shape [1, 1, 2]"
    assert "[n, *, 1] (a list of examples) or [*, 1] (one example)" in error.msg
    assert _json_errors([[0.0] * 5], IMAGE)[0].expected == "shape [n, 1, 8, 8] or [1, 8, 8]"


@pytest.mark.parametrize(
    ("shape", "inputs", "got"),
    [
        (FLAT, [0.0] * 783, "shape [783]"),
        (FLAT, [[0.0] * 785] * 2, "shape [2, 785]"),
        (IMAGE, [[[0.0] * 8] * 7], "shape [1, 7, 8]"),
        (IMAGE, [[[[0.0] * 8] * 8] * 2] * 2, "shape [2, 2, 8, 8]"),
        (SEQUENCE, [[[0.0, 1.0]] * 3], "shape [1, 3, 2]"),
    ],
)
def test_json_wrong_size_on_a_fixed_axis(shape: InputShape, inputs: Any, got: str) -> None:
    for error in _json_errors(inputs, shape):
        assert error.loc == ["inputs"]
        assert error.type == "shape_mismatch"
        assert error.got == got
        assert f"got {got}" in error.msg


def test_json_ragged_rows_name_the_first_bad_row() -> None:
    rows = [[0.0] * 784, [0.0] * 784, [0.0] * 783, [0.0] * 10]
    for error in _json_errors(rows):
        assert error.loc == ["inputs", 2]
        assert error.type == "shape_mismatch"
        assert (error.expected, error.got) == ("784 items", "783 items")
        assert "inputs[2] has 783 items, expected 784" in error.msg


def test_json_ragged_deep_inside_an_example() -> None:
    image = _example(IMAGE).tolist()
    image[0][5] = image[0][5][:6]
    for error in _json_errors([_example(IMAGE).tolist(), image], IMAGE):
        assert error.loc == ["inputs", 1, 0, 5]
        assert error.got == "6 items"


def test_json_number_where_a_list_belongs() -> None:
    for error in _json_errors([[0.0] * 784, 0.0]):
        assert error.loc == ["inputs", 1]
        assert (error.expected, error.got) == ("a list of 784 items", "a number")


def test_json_list_where_a_number_belongs() -> None:
    row: list[Any] = [0.0] * 784
    row[3] = [1.0]
    for error in _json_errors([row]):
        assert error.loc == ["inputs", 0, 3]
        assert (error.expected, error.got) == ("a number", "a list")


def test_json_variable_axis_must_match_across_examples() -> None:
    inputs = [_example(SEQUENCE, 5).tolist(), _example(SEQUENCE, 3).tolist()]
    for error in _json_errors(inputs, SEQUENCE):
        assert error.loc == ["inputs", 1]
        assert error.type == "ragged"
        assert "same length" in error.msg
        assert (error.expected, error.got) == ("5 items", "3 items")


def test_json_variable_axis_may_not_be_empty() -> None:
    inputs = [_example(SEQUENCE, 2).tolist(), []]
    for error in _json_errors(inputs, SEQUENCE):
        assert error.loc == ["inputs", 1]
        assert error.type == "too_short"


# --------------------------------------------------------------------------- JSON: elements


@pytest.mark.parametrize(
    ("bad", "got"),
    [
        (True, "a boolean"),
        (False, "a boolean"),
        ("0.5", "a string"),
        (None, "null"),
        ({"v": 1}, "an object"),
    ],
)
@pytest.mark.parametrize("shape", [FLAT, IMAGE], ids=["flat", "image"])
def test_json_non_numbers_are_refused_where_they_are(shape: InputShape, bad: Any, got: str) -> None:
    examples = [_example(shape, seed=seed).tolist() for seed in range(2)]
    if shape == FLAT:
        examples[1][17] = bad
        loc: list[str | int] = ["inputs", 1, 17]
    else:
        examples[1][0][2][3] = bad
        loc = ["inputs", 1, 0, 2, 3]
    for error in _json_errors(examples, shape):
        assert error.loc == loc
        assert error.type == "number_type"
        assert (error.expected, error.got) == ("a number", got)
        assert got in error.msg


def test_json_boolean_mixed_with_floats_is_refused() -> None:
    # np.asarray([[1.0, True]]) is a float64 array holding 1.0: the silent case.
    for error in _json_errors([[1.0, True]], (2,)):
        assert error.loc == ["inputs", 0, 1]
        assert error.got == "a boolean"
    error = _body_error(b'{"inputs": [[1.0, true]]}', shape=(2,))
    assert error.loc == ["inputs", 0, 1]


def test_json_boolean_mixed_with_integers_is_refused() -> None:
    for error in _json_errors([[1, 2, False]], (3,)):
        assert error.loc == ["inputs", 0, 2]
        assert error.got == "a boolean"


def test_json_all_booleans_are_refused() -> None:
    for error in _json_errors([True, False], (2,)):
        assert error.loc == ["inputs", 0]
        assert error.got == "a boolean"


def test_json_booleans_found_with_many_letters_in_the_body() -> None:
    # Enough "r"/"f" letters elsewhere that the byte scan gives up and the exact check runs.
    body = _body([[0.5, True]], note="r" * 100 + "f" * 100)
    assert _body_error(body, shape=(2,)).loc == ["inputs", 0, 1]
    batch, _ = decode_json_body(_body([[0.5, 1.0]], note="r" * 100), shape=(2,), max_rows=1)
    _assert_batch(batch, np.array([[0.5, 1.0]]))


def test_json_overflowing_literal_is_refused_as_non_finite() -> None:
    error = _body_error(b'{"inputs": [[0.5, 1e400, 2.0], [0.0, -1e400, 1.0]]}', shape=(3,))
    assert error.loc == ["inputs", 0, 1]
    assert error.type == "finite_number"
    assert error.msg.startswith("inputs must be finite")
    assert error.got == "Infinity"
    error = _body_error(b'{"inputs": [0.5, 2.0, -1e400]}', shape=(3,))
    assert error.loc == ["inputs", 2]
    assert error.got == "-Infinity"


def test_json_values_beyond_float32_are_refused() -> None:
    for error in _json_errors([[1.0, 2.0], [3.0, -1e39]], (2,)):
        assert error.loc == ["inputs", 1, 1]
        assert error.type == "finite_number"
        assert error.got == "a number beyond the float32 range"


def test_parsed_non_finite_values_are_refused() -> None:
    error = _parsed_error([[1.0, 2.0], [float("nan"), 1.0]], (2,))
    assert (error.loc, error.got) == (["inputs", 1, 0], "NaN")
    error = _parsed_error([1.0, float("-inf")], (2,))
    assert (error.loc, error.got) == (["inputs", 1], "-Infinity")
    error = _parsed_error([1.0, 10**400], (2,))
    assert (error.loc, error.type) == (["inputs", 1], "finite_number")


def test_parsed_inputs_use_the_given_location() -> None:
    with pytest.raises(InputInvalid) as caught:
        decode_json_inputs([[1.0, None]], shape=(2,), max_rows=1, loc=("job", "inputs"))
    assert caught.value.loc == ["job", "inputs", 0, 1]
    assert "job.inputs[0][1]" in caught.value.msg


# --------------------------------------------------------------------------- JSON: batch size


def test_json_empty_inputs_are_refused() -> None:
    for shape in (FLAT, IMAGE, SEQUENCE):
        for error in _json_errors([], shape):
            assert error.loc == ["inputs"]
            assert error.type == "too_short"


def test_json_too_many_rows_names_the_limit() -> None:
    rows = [[0.0] * 784] * (MAX_ROWS + 1)
    for error in _json_errors(rows):
        assert error.loc == ["inputs"]
        assert error.type == "too_long"
        assert error.expected == f"at most {MAX_ROWS} examples"
        assert f"at most {MAX_ROWS}" in error.msg
    batch, _ = decode_json_body(_body(rows[:MAX_ROWS]), shape=FLAT, max_rows=MAX_ROWS)
    assert batch.shape == (MAX_ROWS, 784)


# --------------------------------------------------------------------------- .npy


@pytest.mark.parametrize(
    "dtype", ["<f4", ">f4", "<f2", "<f8", ">f8", "<i8", ">i4", "|u1", "<u8", "|i1"]
)
def test_npy_integer_and_float_dtypes_are_cast_to_float32(dtype: str) -> None:
    batch = (np.arange(2 * 784) % 100).reshape(2, 784).astype(dtype)
    _assert_batch(decode_npy(_npy(batch), shape=FLAT, max_rows=MAX_ROWS), batch)


@SHAPES
def test_npy_batches(shape: InputShape) -> None:
    batch = np.stack([_example(shape, seed=seed) for seed in range(3)])
    _assert_batch(decode_npy(_npy(batch), shape=shape, max_rows=MAX_ROWS), batch)


def test_npy_fortran_order_is_read_correctly() -> None:
    batch = np.asfortranarray(_example(IMAGE)[None].repeat(2, axis=0))
    body = _npy(batch)
    assert b"'fortran_order': True" in body
    _assert_batch(decode_npy(body, shape=IMAGE, max_rows=MAX_ROWS), batch)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_format_versions(version: tuple[int, int]) -> None:
    batch = _example(FLAT)[None]
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, batch, version=version)
    body = buffer.getvalue()
    assert body[6:8] == bytes(version)
    _assert_batch(decode_npy(body, shape=FLAT, max_rows=MAX_ROWS), batch)


def test_npy_oversized_header_is_refused() -> None:
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 4), }" + b" " * 20_000
    body = b"\x93NUMPY\x02\x00" + (len(header) + 1).to_bytes(4, "little") + header + b"\n"
    error = _npy_error(body + bytes(32), shape=(4,), max_rows=1)
    assert error.type == "npy_invalid"
    assert "longer than" in error.msg


def test_npy_bool_written_with_the_question_mark_code_is_refused() -> None:
    header = "{'descr': '?', 'fortran_order': False, 'shape': (1, 4), }"
    error = _npy_error(_hand_written_npy(header, bytes(4)), shape=(4,), max_rows=1)
    assert (error.type, error.got) == ("dtype_not_accepted", "dtype ?")


def _hand_written_npy(header: str, data: bytes) -> bytes:
    encoded = header.encode("latin-1")
    encoded += b" " * (-(10 + len(encoded) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(encoded).to_bytes(2, "little") + encoded + data


def test_npy_header_written_by_another_tool() -> None:
    data = np.arange(4, dtype="<f8")
    header = "{'shape': (1, 4), 'fortran_order': False, 'descr': '<f8'}"
    result = decode_npy(_hand_written_npy(header, data.tobytes()), shape=(4,), max_rows=1)
    _assert_batch(result, data[None])


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f8', 'shape': (1, 4)}",
        "{'descr': '<f8', 'fortran_order': 0, 'shape': (1, 4)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1, -4)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': [1, 4]}",
        "{'descr': 8, 'fortran_order': False, 'shape': (1, 4)}",
        "{'descr': '<f3', 'fortran_order': False, 'shape': (1, 4)}",
        "{'descr': '<x4', 'fortran_order': False, 'shape': (1, 4)}",
        "{'descr': 'float64', 'fortran_order': False, 'shape': (1, 4)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 4), 'x': 1}",
        "__import__('os').system('true')",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 4)",
    ],
)
def test_npy_malformed_headers(header: str) -> None:
    body = _hand_written_npy(header, bytes(32))
    error = _npy_error(body, shape=(4,), max_rows=1)
    assert error.type == "npy_invalid"
    assert error.loc == ["body"]


def test_npy_huge_claimed_shape_is_refused_without_allocating() -> None:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1000000000000, 1), }"
    error = _npy_error(_hand_written_npy(header, bytes(8)), shape=SEQUENCE, max_rows=1)
    # Refused from the header, first for its sequence length (AIAAS_MAX_SEQUENCE_LENGTH).
    assert error.type == "too_long"
    assert "axis 1" in error.msg


def test_npy_object_array_is_refused_without_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)

    def no_unpickling(*args: object, **kwargs: object) -> object:
        pytest.fail("the .npy decoder unpickled its input")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    error = _npy_error(body, shape=(1,))
    assert error.type == "dtype_not_accepted"
    assert "object arrays are not accepted" in error.msg


@pytest.mark.parametrize(
    ("array", "got"),
    [
        (np.ones((1, 784), dtype=bool), "dtype |b1"),
        (np.ones((1, 784), dtype=np.complex64), "dtype <c8"),
        (np.full((1, 784), "x"), "dtype <U1"),
        (np.full((1, 784), b"x"), "dtype |S1"),
        (
            np.zeros((1, 784), dtype=[("a", "<f4"), ("b", "<i4")]),
            "dtype [('a', '<f4'), ('b', '<i4')]",
        ),
        (np.zeros((1, 784), dtype="V4"), "dtype |V4"),
        (np.zeros((1, 784), dtype="<M8[s]"), "dtype <M8[s]"),
        (np.zeros((1, 784), dtype="<m8[s]"), "dtype <m8[s]"),
    ],
    ids=["bool", "complex", "str", "bytes", "structured", "void", "datetime", "timedelta"],
)
def test_npy_non_numeric_dtypes_are_refused(array: npt.NDArray[Any], got: str) -> None:
    error = _npy_error(_npy(array))
    assert error.loc == ["body"]
    assert error.type == "dtype_not_accepted"
    assert error.got == got


def test_npy_must_have_a_batch_axis() -> None:
    error = _npy_error(_npy(_example(IMAGE)), shape=IMAGE)
    assert error.type == "shape_mismatch"
    assert error.expected == "shape [n, 1, 8, 8]"
    assert error.got == "shape [1, 8, 8]"
    error = _npy_error(_npy(np.array(1.0, dtype=np.float32)))
    assert error.got == "shape []"


def test_npy_wrong_size_on_a_fixed_axis() -> None:
    error = _npy_error(_npy(np.zeros((2, 3, 2))), shape=SEQUENCE)
    assert (error.expected, error.got) == ("shape [n, *, 1]", "shape [2, 3, 2]")


def test_npy_empty_and_too_many_rows() -> None:
    assert _npy_error(_npy(np.zeros((0, 784)))).type == "too_short"
    error = _npy_error(_npy(np.zeros((MAX_ROWS + 1, 784))))
    assert error.type == "too_long"
    assert error.expected == f"at most {MAX_ROWS} examples"
    assert _npy_error(_npy(np.zeros((1, 0, 1))), shape=SEQUENCE).type == "too_short"


def test_npy_non_finite_values_are_refused() -> None:
    batch = np.zeros((3, 784), dtype=np.float32)
    batch[2, 100] = np.nan
    error = _npy_error(_npy(batch))
    assert error.type == "finite_number"
    assert error.msg.startswith("inputs must be finite")
    assert (error.loc, error.got) == (["body", 2, 100], "NaN")
    batch[2, 100] = 0.0
    batch[1, 7] = -np.inf
    assert _npy_error(_npy(batch)).loc == ["body", 1, 7]


def test_npy_float64_beyond_float32_is_refused() -> None:
    batch = np.zeros((1, 784))
    batch[0, 3] = 1e300
    error = _npy_error(_npy(batch))
    assert (error.loc, error.got) == (["body", 0, 3], "a number beyond the float32 range")


def test_npy_large_but_finite_float32_values_are_accepted() -> None:
    batch = np.full((2, 784), 3e38, dtype=np.float32)
    _assert_batch(decode_npy(_npy(batch), shape=FLAT, max_rows=MAX_ROWS), batch)


def test_npy_truncated_or_padded_bodies_are_refused() -> None:
    body = _npy(np.zeros((2, 784), dtype=np.float32))
    for broken in (body[:-1], body[:100], body[:9], body + b"\x00"):
        error = _npy_error(broken)
        assert error.type == "npy_invalid"
        assert error.msg.startswith("the body is not a .npy array")


def test_npz_archive_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, inputs=np.zeros((1, 784)))
    error = _npy_error(buffer.getvalue())
    assert error.type == "npy_invalid"
    assert ".npz" in error.msg


@pytest.mark.parametrize(
    "body",
    [b"", b"[[1.0, 2.0]]", pickle.dumps(np.zeros((1, 784))), b"\x93NUMPY\x09\x00\x00\x00"],
)
def test_npy_garbage_is_refused(body: bytes) -> None:
    error = _npy_error(body)
    assert (error.loc, error.type) == (["body"], "npy_invalid")


def test_npy_result_is_writable_although_the_body_is_immutable() -> None:
    batch = _example(FLAT)[None].astype(np.float32)
    result = decode_npy(_npy(batch), shape=FLAT, max_rows=MAX_ROWS)
    result[0, 0] = 42.0
    assert result[0, 0] == 42.0


# --------------------------------------------------------------------------- encode/validate


def test_encode_npy_round_trips_as_float32() -> None:
    batch = _example(IMAGE)[None]
    body = encode_npy(batch)
    loaded = np.load(io.BytesIO(body), allow_pickle=False)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, batch.astype(np.float32))
    _assert_batch(decode_npy(body, shape=IMAGE, max_rows=1), batch)


def test_validate_batch_returns_a_qualifying_array_itself() -> None:
    batch = np.zeros((2, 784), dtype=np.float32)
    assert validate_batch(batch, shape=FLAT, max_rows=MAX_ROWS, loc=["inputs"]) is batch


def test_validate_batch_copies_what_it_cannot_return() -> None:
    read_only = np.zeros((2, 784), dtype=np.float32)
    read_only.flags.writeable = False
    _assert_batch(validate_batch(read_only, shape=FLAT, max_rows=4, loc=["x"]), read_only)
    strided = np.zeros((2, 784 * 2))[:, ::2]
    _assert_batch(validate_batch(strided, shape=FLAT, max_rows=4, loc=["x"]), strided)


def test_validate_batch_refusals() -> None:
    with pytest.raises(InputInvalid) as caught:
        validate_batch(np.zeros((2, 784), dtype=bool), shape=FLAT, max_rows=4, loc=["x"])
    assert (caught.value.loc, caught.value.type) == (["x"], "dtype_not_accepted")
    with pytest.raises(InputInvalid) as caught:
        validate_batch(np.zeros(784), shape=FLAT, max_rows=4, loc=["x"])
    assert caught.value.got == "shape [784]"
    with pytest.raises(InputInvalid) as caught:
        validate_batch(np.full((1, 784), np.inf), shape=FLAT, max_rows=4, loc=["x"])
    assert caught.value.loc == ["x", 0, 0]


def test_input_invalid_to_error() -> None:
    error = _json_errors([[1.0, True]], (2,))[0]
    assert error.to_error() == {
        "loc": ["inputs", 0, 1],
        "msg": "inputs[0][1] must be a number, got a boolean",
        "type": "number_type",
        "expected": "a number",
        "got": "a boolean",
    }
    assert str(error) == error.msg


@pytest.mark.parametrize(("shape", "max_rows"), [((), 1), ((0,), 1), ((-1,), 1), ((4,), 0)])
def test_a_bad_model_shape_is_a_server_bug(shape: InputShape, max_rows: int) -> None:
    with pytest.raises(ValueError, match=r"must be|invalid input shape"):
        decode_json_inputs([1.0], shape=shape, max_rows=max_rows)
