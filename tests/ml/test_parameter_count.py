from __future__ import annotations

from typing import Any

import pytest

from aiaas.ml.architectures import build_model, count_parameters, parameter_count, parse_config

CASES: list[tuple[str, dict[str, Any]]] = [
    ("mlp", {"input_dim": 1, "hidden": [], "output_dim": 1}),
    ("mlp", {"input_dim": 64, "hidden": [32], "output_dim": 10}),
    ("mlp", {"input_dim": 7, "hidden": [5, 9, 3], "output_dim": 4, "activation": "silu"}),
    ("cnn", {"in_channels": 1, "height": 8, "width": 8,
             "blocks": [{"channels": 3, "kernel": 3}], "output_dim": 10}),
    ("cnn", {"in_channels": 3, "height": 17, "width": 11,
             "blocks": [{"channels": 4, "kernel": 3, "padding": 0},
                        {"channels": 6, "kernel": 2, "pool": 1},
                        {"channels": 5, "kernel": 3, "padding": 2, "pool": 3}],
             "hidden": [7, 6], "output_dim": 2}),
    ("cnn", {"in_channels": 1, "height": 28, "width": 28,
             "blocks": [{"channels": 8, "kernel": 5}, {"channels": 16, "kernel": 3},
                        {"channels": 16, "kernel": 1, "pool": 1},
                        {"channels": 4, "kernel": 4, "padding": 1}],
             "hidden": [12], "output_dim": 10}),
]  # fmt: skip
for cell in ("lstm", "gru", "rnn"):
    CASES += [
        ("rnn", {"cell": cell, "input_size": 1, "hidden_size": 8, "seq_len": 50, "output_dim": 3}),
        ("rnn", {"cell": cell, "input_size": 3, "hidden_size": 5, "num_layers": 3,
                 "bidirectional": True, "seq_len": None, "output_dim": 2, "dropout": 0.1}),
        ("rnn", {"cell": cell, "input_size": 4, "hidden_size": 6, "num_layers": 2,
                 "bidirectional": False, "seq_len": 10, "output_dim": 1}),
    ]  # fmt: skip


@pytest.mark.parametrize(("arch", "raw"), CASES)
def test_analytic_count_matches_built_module(arch: str, raw: dict[str, Any]) -> None:
    config = parse_config(arch, raw, max_parameters=10_000_000)
    assert parameter_count(arch, config) == count_parameters(build_model(arch, config))
