"""The README's walk-through, pasted into a shell against a live ``aiaas serve``."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.helpers import live_server as start_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def live_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    env = {
        # As the README says to start it for the local webhook listener.
        "AIAAS_WEBHOOK_ALLOW_PRIVATE": "true",
        # Only the test that uses the demo models pays for training them.
        "AIAAS_DEMO_MODELS": str(request.node.get_closest_marker("demo_models") is not None),
    }
    with start_server(tmp_path, env) as base:
        yield base


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment less any ``AIAAS_`` variable, plus ``extra``: what a user's
    shell that follows the README has."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")} | dict(extra)


def readme_block(marker: str, language: str = "sh") -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)```", text, re.S)
    assert match, f"no ```{language} block after <!-- {marker} --> in README.md"
    return match.group(1)


def run_blocks(
    live_server: str,
    tmp_path: Path,
    *markers: str,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run README blocks in one shell, from a copy of the checkout's layout, as a user would,
    with no ``AIAAS_`` variable of the caller's but those in ``env``."""
    script = "\n".join(readme_block(m) for m in markers).replace(
        "http://127.0.0.1:8000", live_server
    )
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    (workdir / "docs").symlink_to(ROOT / "docs")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        env=clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_readme_walkthrough_works_as_written(live_server: str, tmp_path: Path) -> None:
    result = run_blocks(live_server, tmp_path, "walkthrough")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert '"email":"ada@example.com"' in lines[0]
    assert lines[1].startswith("aiaas_sk_")
    assert '"webhook_secret"' in lines[2]
    assert '"role":"user"' in lines[2]


def test_readme_registry_quickstart_works_as_written(live_server: str, tmp_path: Path) -> None:
    result = run_blocks(live_server, tmp_path, "walkthrough", "registry")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    model, wrote, version, listed, alias, production = (
        json.loads(x) if x.startswith("{") else x for x in lines[3:9]
    )
    assert model["name"] == "iris-demo"
    assert wrote == "wrote iris-mlp.safetensors"
    assert version["version"] == 1
    assert version["input"] == {"shape": [4], "dtype": "float32"}
    assert version["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert [v["version"] for v in listed["data"]] == [1]
    assert alias == {**alias, "alias": "production", "version": 1}
    assert production["version"] == 1
    assert production["aliases"] == ["production"]


def test_readme_predict_and_async_quickstart_works_as_written(
    live_server: str, tmp_path: Path
) -> None:
    result = run_blocks(live_server, tmp_path, "walkthrough", "registry", "predict", "async")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()[9:]
    sync = json.loads(lines[0])
    assert sync["model"] == "iris-demo"
    assert len(sync["outputs"]) == 2
    assert all(p in ("setosa", "versicolor", "virginica") for p in sync["predictions"])
    npy_outputs = json.loads(lines[1])
    assert len(npy_outputs) == 1
    assert len(npy_outputs[0]) == 3
    assert lines[2] == "webhook: signature valid, job succeeded"
    webhook_predictions = json.loads(lines[3])
    job = json.loads(lines[4])
    assert job["status"] == "succeeded"
    assert job["predictions"] == webhook_predictions
    assert job["webhook"]["attempts"] == 1
    assert job["webhook"]["last_status"] == 204


@pytest.mark.demo_models
@pytest.mark.slow
def test_readme_demo_and_training_quickstart_works_as_written(
    live_server: str, tmp_path: Path
) -> None:
    blocks = ("walkthrough", "demo", "training", "explain")
    result = run_blocks(live_server, tmp_path, *blocks, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()[3:]
    assert "8x8" in lines[0]
    assert lines[1] == "[0]"
    assert lines[2] == "builtin:iris"
    events = lines[3:6]
    assert events[0].startswith("id: ")
    assert events[1] == "event: end"
    assert json.loads(events[2].removeprefix("data: ")) == {"status": "succeeded", "version": 1}
    assert float(lines[6]) >= 0.85
    assert lines[7] == "['setosa']"
    # The digit explained: its class, the completeness gap, then an 8x8 grid of attributions.
    target, gap = lines[8].split(" ", 1)
    assert target == "[0]"
    assert abs(json.loads(gap)[0]) < 0.05
    grid = [row.split() for row in lines[9:]]
    assert [len(row) for row in grid] == [8] * 8


@pytest.mark.slow
def test_readme_sdk_section_works_as_written(live_server: str, tmp_path: Path) -> None:
    script = readme_block("sdk", "python").replace("http://127.0.0.1:8000", live_server)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env({"AIAAS_CONFIG": str(tmp_path / "no-config.toml")}),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "pushed version 1"
    assert re.fullmatch(r"\['(setosa|versicolor|virginica)'\] \(1, 3\)", lines[1]), lines[1]
    assert [line.split(":")[0] for line in lines[2:4]] == ["epoch 10", "epoch 20"]
    assert lines[4] == "fine-tuned: succeeded version 2"


@pytest.mark.slow
def test_readme_command_line_section_works_as_written(live_server: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    result = run_blocks(live_server, tmp_path, "cli", env={"AIAAS_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("registered alan@example.com (")
    assert lines[1].startswith(f"logged in to {live_server} as alan@example.com; API key ")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tomllib.loads(config.read_text())["base_url"] == live_server
    assert lines[2:6] == [
        "created classification model alan-iris",
        "wrote iris-mlp.safetensors",
        "pushed alan-iris version 1: mlp, 131 parameters, 820 B",
        "alan-iris:production → 1",
    ]
    assert lines[6] == "alan-iris version 1"
    predicted = [line for line in lines if re.match(r"│ [01] +│ ", line)]
    assert len(predicted) == 2
    assert all(
        line.split("│")[2].strip() in ("setosa", "versicolor", "virginica") for line in predicted
    )
    epochs = [line.split()[1] for line in lines if line.startswith("epoch ") and "loss" in line]
    assert epochs == [f"{i}/20" for i in range(1, 21)]
    assert any(line.strip() == "● train loss   ○ val loss" for line in lines)
    accuracy = next(line for line in lines if line.startswith("accuracy "))
    assert float(accuracy.split()[1]) >= 0.8
    assert lines[-1] == "alan-trained version 1 is ready"


def test_readme_rollout_works_as_written(live_server: str, tmp_path: Path) -> None:
    result = run_blocks(live_server, tmp_path, "walkthrough", "registry", "rollout")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()[9:]
    wrote, split = lines[0], json.loads(lines[1])
    assert wrote == "wrote iris-mlp.safetensors"
    assert split == {**split, "alias": "production", "version": 1, "versions": {"1": 90, "2": 10}}
    counts = {}
    for line in lines[2:4]:
        count, _, version = line.split()
        counts[version] = int(count)
    assert sum(counts.values()) == 200
    assert counts.get("2", 0) > 0
    compare = json.loads(lines[-2])
    served = {v["version"]: v["requests"] for v in compare["versions"]}
    assert served == {1: counts["1"], 2: counts["2"]}
    assert json.loads(lines[-1])["versions"] is None
