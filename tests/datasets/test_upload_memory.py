"""Parsing an upload holds at most a small multiple of its size in memory (tracemalloc)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from aiaas.datasets.parsing import NPZ_EXPANSION_FLOOR, parse_upload
from aiaas.errors import PayloadTooLarge


def peak_of(parse: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        result = parse()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.x.shape[0] > 0
    return peak


def csv_bytes(rows: int, columns: int) -> bytes:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 17, size=(rows, columns))  # short cells: the hardest ratio
    header = ",".join(f"f{i}" for i in range(columns)) + ",label\n"
    lines = (",".join(map(str, row)) + f",c{row[0] % 3}" for row in values)
    return (header + "\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(("rows", "columns"), [(20_000, 64), (200_000, 2)])
def test_a_csv_upload_peaks_at_a_small_multiple_of_its_size(rows: int, columns: int) -> None:
    data = csv_bytes(rows, columns)
    peak = peak_of(
        lambda: parse_upload(data, filename="d.csv", content_type=None, task="classification")
    )
    # The decoded text (1x), the float32 features (up to 2x for one-digit cells), the labels,
    # and one chunk of cell strings (~4 MB): well under what parsing every row at once took
    # (30x and more).
    assert peak < 5 * len(data) + 12 * 1024 * 1024, (peak, len(data))


def test_a_small_compressed_npz_cannot_unpack_to_hundreds_of_times_its_size() -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=np.zeros((40_000, 64), np.float32), y=np.zeros(40_000, np.int64))
    data = buffer.getvalue()
    assert len(data) * 100 < 40_000 * 64 * 4  # compresses over a hundredfold
    with pytest.raises(PayloadTooLarge, match="times the upload's size"):
        parse_upload(data, filename="d.npz", content_type=None, task="classification")
    assert NPZ_EXPANSION_FLOOR < 40_000 * 64 * 4


def test_an_npz_upload_peaks_at_a_small_multiple_of_its_size() -> None:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, X=rng.normal(size=(20_000, 64)), y=rng.integers(0, 3, 20_000))
    data = buffer.getvalue()
    peak = peak_of(
        lambda: parse_upload(data, filename="d.npz", content_type=None, task="classification")
    )
    assert peak < 3 * len(data), (peak, len(data))
