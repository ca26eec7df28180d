"""The dataset upload entry point: which format an upload is, judged by its bytes first.

NPZ and CSV are accepted; anything recognisably else (a lone ``.npy``, gzip, JSON,
spreadsheets, binary data) is refused as :class:`UnsupportedMediaType` at ``["file"]``
with what it seems to be, so the client learns what to send instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiaas.datasets.arrays import DatasetArrays
from aiaas.datasets.parsing import limits
from aiaas.datasets.parsing.csv_files import parse_csv
from aiaas.datasets.parsing.limits import NAME_CHARS, quoted
from aiaas.datasets.parsing.npz import parse_npz
from aiaas.errors import UnsupportedMediaType
from aiaas.ml.task import Task

_ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC: Final = b"\x93NUMPY"
_GZIP_MAGIC: Final = b"\x1f\x8b"

_OTHER_MEDIA_TYPES: Final = {
    "application/json": "JSON",
    "application/x-ndjson": "JSON lines",
    "application/xml": "XML",
    "text/xml": "XML",
    "text/html": "HTML",
    "application/pdf": "PDF",
    "application/vnd.apache.parquet": "Parquet",
    "application/x-parquet": "Parquet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "an Excel workbook",
    "application/vnd.oasis.opendocument.spreadsheet": "a spreadsheet",
}
_OTHER_SUFFIXES: Final = {
    ".json": "JSON",
    ".jsonl": "JSON lines",
    ".ndjson": "JSON lines",
    ".xlsx": "an Excel workbook",
    ".xls": "an Excel workbook",
    ".ods": "a spreadsheet",
    ".parquet": "Parquet",
    ".pkl": "a pickle",
    ".pickle": "a pickle",
}


def parse_upload(
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    task: Task,
    label_column: str = "label",
    input_shape: Sequence[int] | None = None,
    max_bytes: int = limits.MAX_NPZ_BYTES,
) -> DatasetArrays:
    """Parse an upload as NPZ or CSV, judging by its bytes before its name or media type.

    Anything that is neither (a lone ``.npy``, gzip, JSON, spreadsheets, binary data) gets
    :class:`UnsupportedMediaType`.
    """
    if data.startswith(_ZIP_MAGICS):
        return parse_npz(data, task=task, input_shape=input_shape, max_bytes=max_bytes)
    what = _other_format(data, filename, content_type)
    if what is not None:
        raise UnsupportedMediaType(
            f"The upload{_described(filename, content_type)} is {what}; upload a CSV file "
            "(UTF-8, comma-separated, with a header row) or an NPZ archive holding X and y.",
            errors=[{"loc": ["file"], "msg": f"{what} is not accepted"}],
        )
    return parse_csv(data, task=task, label_column=label_column, input_shape=input_shape)


def _other_format(data: bytes, filename: str | None, content_type: str | None) -> str | None:
    """What the upload is, when it is clearly neither CSV nor NPZ."""
    if data.startswith(_NPY_MAGIC):
        return "a single .npy array (an NPZ archive from np.savez(f, X=..., y=...) is needed)"
    if data.startswith(_GZIP_MAGIC):
        return "gzip-compressed"
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _OTHER_MEDIA_TYPES:
        return _OTHER_MEDIA_TYPES[media]
    if media.startswith(("image/", "audio/", "video/")):
        return f"{media.split('/')[0]} data"
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    if suffix in _OTHER_SUFFIXES:
        return _OTHER_SUFFIXES[suffix]
    # Text never holds NUL; UTF-16 text and binary formats almost always do.
    if b"\x00" in data:
        return "binary data, not UTF-8 text"
    return None


def _described(filename: str | None, content_type: str | None) -> str:
    parts = [quoted(filename, NAME_CHARS)] if filename else []
    if content_type:
        parts.append(quoted(content_type, NAME_CHARS))
    return f" ({', '.join(parts)})" if parts else ""
