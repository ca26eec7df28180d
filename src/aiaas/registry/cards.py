"""Model cards: what a version is, what it was made from, how it scored and what its owner
says it is for, as a JSON-ready dict and as Markdown.

Nothing here reads the database or speaks HTTP: the route hands in a version's facts and picks
the form. The Markdown is rendered from the very dict the JSON form answers, so both say the
same. Every string a user chose (the owner's text, labels, dataset names, the e-mail address)
is escaped there: a page that renders a card shows that text as written, never as HTML,
links, images or headings of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MARKDOWN = "text/markdown"
_JSON = "application/json"

# What a version's metrics hold besides the figures themselves; the card puts them elsewhere.
_NOT_FIGURES = frozenset({"history", "rows", "evaluated_on", "epochs_run", "stopped_early", "base"})
_CLASSIFICATION = ("accuracy", "precision", "recall", "f1")
_REGRESSION = ("mae", "rmse", "r2")
_FIGURE_NAMES = {
    "accuracy": "Accuracy",
    "precision": "Precision (macro)",
    "recall": "Recall (macro)",
    "f1": "F1 (macro)",
    "mae": "MAE",
    "rmse": "RMSE",
    "r2": "R²",
}
_NOT_STATED = "_Not stated by the owner._"


@dataclass(frozen=True)
class CardFacts:
    """One version as the card needs it, in plain values. ``owner_email`` is the viewer's own
    address when the viewer owns the model, and None for anyone else."""

    model: str
    task: str
    version: int
    aliases: Sequence[str]
    architecture: str
    config: Mapping[str, Any]
    parameters: int
    labels: Sequence[str] | None
    input_shape: Sequence[int | None]
    input_dtype: str
    metrics: Mapping[str, Any] | None
    provenance: Mapping[str, Any] | None
    created_at: datetime
    owned: bool
    owner_email: str | None
    intended_use: str | None
    limitations: str | None


def build_card(facts: CardFacts) -> dict[str, Any]:
    """The card as the JSON form answers it (the shape of ``schemas.CardRead``)."""
    provenance = facts.provenance
    metrics = facts.metrics
    not_recorded: list[str] = []
    # Only trainings record metrics: an upload carries none, so either one marks a training
    # (a version trained before provenance was kept and whose training row is gone has only
    # its metrics).
    source = "training" if provenance is not None or metrics is not None else "upload"

    value_range = _value_range(provenance)
    if value_range is None:
        not_recorded.append("input.value_range")
    training = _training(provenance, metrics) if source == "training" else None
    if training is None:
        not_recorded.append("training")
    elif any(d["rows"] is None for d in training["datasets"]):
        not_recorded.append("training.datasets.rows")
    figures = _figures(metrics)
    if figures is None:
        not_recorded.append("metrics")

    return {
        "model": facts.model,
        "version": facts.version,
        "aliases": sorted(facts.aliases),
        "task": facts.task,
        "source": source,
        "architecture": facts.architecture,
        "config": dict(facts.config),
        "parameters": facts.parameters,
        "labels": list(facts.labels) if facts.labels is not None else None,
        "input": {
            "shape": list(facts.input_shape),
            "dtype": facts.input_dtype,
            "value_range": value_range,
        },
        "training": training,
        "metrics": figures,
        "created_at": facts.created_at,
        "created_by": {
            "owned": facts.owned,
            "email": facts.owner_email if facts.owned else None,
        },
        "intended_use": facts.intended_use,
        "limitations": facts.limitations,
        "not_recorded": not_recorded,
    }


def _value_range(provenance: Mapping[str, Any] | None) -> dict[str, float] | None:
    found = (provenance or {}).get("input_range")
    if not isinstance(found, Mapping) or found.get("min") is None or found.get("max") is None:
        return None
    return {"min": float(found["min"]), "max": float(found["max"])}


def _training(
    provenance: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    if provenance is None:
        return None
    metrics = metrics or {}
    splits = metrics.get("rows")
    base = metrics.get("base")
    base_figures = _figures(base.get("metrics")) if isinstance(base, Mapping) else None
    if base_figures is not None:
        # A training measures its base on its own held-out rows, so on the version's split.
        base_figures["evaluated_on"] = metrics.get("evaluated_on")
    return {
        "datasets": [
            {"id": str(d.get("id")), "name": d.get("name"), "rows": d.get("rows")}
            for d in provenance.get("datasets") or []
        ],
        "splits": dict(splits) if isinstance(splits, Mapping) else None,
        "hyperparameters": provenance.get("hyperparameters"),
        "epochs_run": metrics.get("epochs_run"),
        "stopped_early": metrics.get("stopped_early"),
        "base_version": provenance.get("base_version"),
        "base_metrics": base_figures,
    }


def _figures(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The held-out figures of ``metrics`` (no loss history): accuracy and the confusion
    matrix, or MAE/RMSE/R², and which split they were measured on."""
    if not metrics:
        return None
    figures = {k: v for k, v in metrics.items() if k not in _NOT_FIGURES}
    figures["evaluated_on"] = metrics.get("evaluated_on")
    return figures


# ---- which form ---------------------------------------------------------------------------


def wants_markdown(accept: str | None, requested: str | None = None) -> bool:
    """Whether to answer Markdown. ``requested`` (the ``format`` query parameter) decides
    when given; else the Accept header must rank Markdown above JSON. A tie, ``*/*`` alone
    included, answers JSON, the API's default."""
    if requested is not None:
        return requested == "markdown"
    if not accept:
        return False
    return _quality(accept, MARKDOWN) > _quality(accept, _JSON)


def _quality(accept: str, offered: str) -> float:
    """The q the most specific range of ``accept`` matching ``offered`` gives it (RFC 9110)."""
    kind = offered.split("/")[0]
    specificity, quality = -1, 0.0
    for entry in accept.split(","):
        media, *params = (piece.strip() for piece in entry.split(";"))
        media = media.lower()
        rank = {offered: 2, f"{kind}/*": 1, "*/*": 0}.get(media)
        if rank is None or rank <= specificity:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        # Written so that NaN, which compares false to everything, counts as 0 too.
        specificity, quality = rank, q if 0.0 <= q <= 1.0 else 0.0
    return quality


# ---- Markdown ------------------------------------------------------------------------------

# The characters CommonMark and GitHub's extensions give a meaning to: emphasis, code, links
# and images, headings, lists, tables, strikethrough, math, and the bare URLs and e-mail
# addresses GitHub links by itself ("http:", "www.", "@"). CommonMark lets a backslash escape
# any ASCII punctuation, and an escaped character can start none of these.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:@$=])")
# As entities rather than escapes: every Markdown dialect passes entities through as text,
# while one that knows no backslash escape would let "<" open a tag.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    """``text`` as Markdown that renders as exactly this text, on one line."""
    flat = " ".join(text.split())
    escaped = _SPECIAL.sub(r"\\\1", flat)
    return "".join(_ENTITIES.get(char, char) for char in escaped)


def escape_block(text: str) -> str:
    """Multi-line ``text`` as Markdown paragraphs that keep its line breaks."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").strip())
    rendered = []
    for paragraph in paragraphs:
        lines = [escape(line) for line in paragraph.split("\n") if line.strip()]
        # A backslash at the end of a line is CommonMark's hard line break.
        rendered.append("\\\n".join(lines))
    return "\n\n".join(rendered)


def _fenced(text: str, info: str = "") -> str:
    """``text`` in a code block no line of it can close: the fence is longer than any run of
    backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A GitHub table of cells already escaped; columns from ``numeric_from`` align right."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _shape(shape: Sequence[int | None]) -> str:
    return " x ".join("any" if d is None else str(d) for d in shape) or "scalar"


def _when(value: datetime | str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card (as :func:`build_card` made it) as a Markdown document."""
    sections = [
        _heading(card),
        "## Intended use\n\n" + _owner_text(card["intended_use"]),
        "## Limitations\n\n" + _owner_text(card["limitations"]),
        _architecture(card),
        _input(card),
        _training_section(card),
        _metrics_section(card),
    ]
    return "\n\n".join(sections) + "\n"


def _owner_text(text: str | None) -> str:
    return escape_block(text) if text and text.strip() else _NOT_STATED


def _heading(card: Mapping[str, Any]) -> str:
    summary = (
        f"A {card['task']} model: {escape(card['architecture'])}, "
        f"{_number(card['parameters'])} parameters."
    )
    if card["aliases"]:
        summary += " Aliases: " + ", ".join(escape(a) for a in card["aliases"]) + "."
    author = card["created_by"]
    who = f"you ({escape(author['email'])})" if author.get("email") else "the model's owner"
    how = "by a training on this platform" if card["source"] == "training" else "uploaded"
    made = f"Made by {who} on {_when(card['created_at'])}, {how}."
    return f"# {escape(card['model'])}, version {card['version']}\n\n{summary}\n\n{made}"


def _architecture(card: Mapping[str, Any]) -> str:
    parts = [
        "## Architecture",
        f"- Family: {escape(card['architecture'])}\n- Parameters: {_number(card['parameters'])}",
    ]
    if card["labels"]:
        parts[1] += "\n- Labels, in output order: " + ", ".join(escape(x) for x in card["labels"])
    parts.append(_fenced(json.dumps(card["config"], indent=2, sort_keys=True), "json"))
    return "\n\n".join(parts)


def _input(card: Mapping[str, Any]) -> str:
    spec = card["input"]
    span = spec["value_range"]
    if span is None:
        value_range = "- Value range: not recorded"
    else:
        value_range = (
            f"- Value range in the training data: {_number(span['min'])} to {_number(span['max'])}"
        )
    return (
        "## Input\n\n"
        f"- Shape of one example: {_shape(spec['shape'])} (a batch adds a first axis)\n"
        f"- Type: {escape(spec['dtype'])}\n" + value_range
    )


def _training_section(card: Mapping[str, Any]) -> str:
    training = card["training"]
    if training is None:
        why = (
            "this version was uploaded, not trained here"
            if card["source"] == "upload"
            else "the training that made this version is no longer on record"
        )
        return f"## Training\n\nNot recorded: {why}."
    parts = ["## Training"]
    if training["base_version"] is not None:
        parts.append(f"Fine-tuned from version {training['base_version']}.")
    if training["datasets"]:
        rows = [
            [
                escape(d["id"]),
                escape(d["name"]) if d.get("name") else "not recorded",
                _number(d["rows"]) if d.get("rows") is not None else "not recorded",
            ]
            for d in training["datasets"]
        ]
        parts.append("Datasets:\n\n" + _table(["Dataset", "Name", "Rows"], rows, numeric_from=2))
    splits = training["splits"]
    if splits:
        parts.append(
            f"Rows per split: {_number(splits.get('train'))} training, "
            f"{_number(splits.get('validation'))} validation, {_number(splits.get('test'))} test."
        )
    if training["epochs_run"] is not None:
        early = " (stopped early)" if training["stopped_early"] else ""
        parts.append(f"Epochs run: {_number(training['epochs_run'])}{early}.")
    hyperparameters = training["hyperparameters"]
    if hyperparameters:
        rows = [
            [escape(str(k)), "none" if v is None else _number(v)]
            for k, v in hyperparameters.items()
        ]
        parts.append("Hyperparameters:\n\n" + _table(["Hyperparameter", "Value"], rows))
    return "\n\n".join(parts)


def _metrics_section(card: Mapping[str, Any]) -> str:
    figures = card["metrics"]
    if figures is None:
        return "## Test metrics\n\nNot recorded: this version was uploaded without metrics."
    split = figures.get("evaluated_on") or "held-out"
    parts = ["## Test metrics", f"Measured on the {escape(split)} split."]
    training = card["training"] or {}
    base = training.get("base_metrics")
    names = _CLASSIFICATION if card["task"] == "classification" else _REGRESSION
    header = ["Metric", "This version"]
    if base is not None:
        header.append(f"Base version {training['base_version']}, same rows")
    rows = []
    for key in names:
        if key in figures:
            row = [_FIGURE_NAMES[key], _number(figures[key])]
            if base is not None:
                row.append(_number(base.get(key)))
            rows.append(row)
    if rows:
        parts.append(_table(header, rows))
    per_class = figures.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        rows = [
            [escape(str(name))]
            + [_number(scores.get(k)) for k in ("precision", "recall", "f1", "support")]
            for name, scores in per_class.items()
        ]
        header = ["Class", "Precision", "Recall", "F1", "Support"]
        parts.append("Per class:\n\n" + _table(header, rows))
    matrix = figures.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        parts.append(_confusion(matrix, card["labels"]))
    return "\n\n".join(parts)


def _confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str] | None) -> str:
    names = list(labels) if labels and len(labels) == len(matrix) else range(len(matrix))
    cells = [escape(str(n)) for n in names]
    rows = [[cells[i], *(_number(c) for c in row)] for i, row in enumerate(matrix)]
    return (
        "### Confusion matrix\n\n"
        "Rows are the true classes, columns the predicted ones.\n\n"
        + _table(["True class", *cells], rows)
    )
