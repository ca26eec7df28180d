"""The ``aiaas`` client commands against a live ``aiaas serve``, each run as a user runs it: a
fresh process with its own config file and no stray ``AIAAS_`` variable. Commands are written
as they are typed in a shell."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from aiaas.client import Client
from aiaas.client.config import Config, write_file
from tests.factories import MLP_CONFIG, PASSWORD, seeded_module, unique
from tests.helpers import free_port

pytestmark = pytest.mark.slow

LABELS = ["setosa", "versicolor", "virginica"]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
SCOPES = ["models:read", "models:write", "predict", "train"]
CONFIG = shlex.quote(json.dumps(MLP_CONFIG))
# What would change how a command prints: a terminal's width, a forced terminal.
DISPLAY = ("COLUMNS", "LINES", "TTY_COMPATIBLE", "FORCE_COLOR")


@dataclass
class Shell:
    """Runs ``aiaas <command line>`` in a new process, with ``AIAAS_CONFIG`` in ``home``."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    def __call__(
        self, command: str, *, code: int = 0, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = self.python(["-m", "aiaas", *shlex.split(command)], stdin=stdin, **env)
        assert result.returncode == code, (
            f"aiaas {command} exited {result.returncode}, not {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def json(self, command: str, **env: str) -> Any:
        return json.loads(self(f"{command} --json", **env).stdout)

    def python(
        self, argv: list[str], *, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("AIAAS_") and k not in DISPLAY
        }
        environment.update(AIAAS_CONFIG=str(self.config), **self.env, **env)
        return subprocess.run(
            [sys.executable, *argv],
            cwd=self.home,
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    """Someone with no config file yet."""
    return Shell(tmp_path)


@pytest.fixture(scope="module")
def user(server: str, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    """Someone logged in: the config file holds the server and a key with every scope; the
    account's email and password are in the environment, for the key commands."""
    email = f"{unique('cli')}@example.com"
    with Client(server) as anonymous:
        anonymous.accounts.register(email, PASSWORD)
        token = anonymous.accounts.login(email, PASSWORD).access_token
        with anonymous.with_key(token) as owner:
            key = owner.keys.create("cli tests", SCOPES).key
    home = tmp_path_factory.mktemp("cli-user")
    write_file(Config(base_url=server, api_key=key), home / "config.toml")
    return Shell(home, {"AIAAS_EMAIL": email, "AIAAS_PASSWORD": PASSWORD})


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """An iris MLP and its state dict saved as safetensors."""
    module = seeded_module()
    path = tmp_path_factory.mktemp("weights") / "iris.safetensors"
    save_file(module.state_dict(), str(path))
    return module, path


def expected_outputs(module: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = torch.softmax(module(torch.from_numpy(rows)), dim=-1).numpy()
    return out


def test_register_login_and_keys(shell: Shell, server: str) -> None:
    email = f"{unique('cli')}@example.com"
    registered = shell(f"register --base-url {server} --email {email}", AIAAS_PASSWORD=PASSWORD)
    assert registered.stdout.startswith(f"registered {email} (")
    taken = shell(f"register --base-url {server} --email {email}", code=1, AIAAS_PASSWORD=PASSWORD)
    assert taken.stderr.startswith("error: Conflict: ")

    # The password from the prompt (stdin here); the key goes to the file, mode 0600.
    logged_in = shell(
        f"login --base-url {server} --email {email} --key-name laptop --json",
        stdin=f"{PASSWORD}\n",
    )
    # The prompt is written before the JSON.
    summary = json.loads(logged_in.stdout[logged_in.stdout.index("{") :])
    assert summary["key"]["name"] == "laptop"
    assert summary["key"]["key"] is None  # the secret is in the file, not on the screen
    assert stat.S_IMODE(shell.config.stat().st_mode) == 0o600
    stored = tomllib.loads(shell.config.read_text())
    assert stored["base_url"] == server
    assert stored["api_key"].startswith(summary["key"]["prefix"])
    # Later commands find the server and the key there (with neither, they exit 2).
    assert not any(model["owned"] for model in shell.json("models list"))

    # Keys are managed with the email and password, never with the stored key.
    account = {"AIAAS_EMAIL": email, "AIAAS_PASSWORD": PASSWORD}
    created = shell.json("keys create ci --scope predict --expires-in-days 7", **account)
    assert created["key"].startswith("aiaas_sk_")
    assert created["scopes"] == ["predict"]
    expires = datetime.fromisoformat(created["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=6) < expires <= timedelta(days=7)
    human = shell("keys create spare --scopes models:read,predict", **account)
    assert human.stdout.splitlines()[-1].startswith("aiaas_sk_")
    listed = {k["name"]: k for k in shell.json("keys list", **account)}
    assert set(listed) == {"laptop", "ci", "spare"}
    assert listed["spare"]["scopes"] == ["models:read", "predict"]
    assert all(k["key"] is None for k in listed.values())
    assert "laptop" in shell("keys list", **account).stdout

    assert shell(f"keys revoke {created['id']}", **account).stdout == f"revoked {created['id']}\n"
    assert {k["name"]: k["revoked"] for k in shell.json("keys list", **account)}["ci"]
    refused = shell(f"models list --api-key {created['key']}", code=1)
    assert refused.stderr.startswith("error: Authentication required")

    wrong = shell("keys list", code=1, AIAAS_EMAIL=email, AIAAS_PASSWORD="not it at all")
    assert wrong.stderr.startswith("error: ")


def test_models_versions_aliases_predict_and_usage(
    user: Shell, weights: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    module, path = weights
    name = unique("cli-iris")
    created = user.json(
        f"models create {name} --task classification --labels {','.join(LABELS)}"
        " --description 'from a shell'"
    )
    assert (created["name"], created["labels"], created["visibility"]) == (name, LABELS, "private")
    pushed = user.json(f"models push {name} --weights {path} --architecture mlp --config {CONFIG}")
    assert pushed["version"] == 1
    assert pushed["parameters"] == sum(p.numel() for p in module.parameters())
    datetime.fromisoformat(pushed["created_at"])

    assert name in user("models list").stdout
    assert name in [m["name"] for m in user.json("models list")]
    shown = user(f"models show {name}").stdout
    assert "from a shell" in shown
    assert re.search(r"│ 1 +│ mlp ", shown)
    assert [v["version"] for v in user.json(f"versions list {name}")] == [1]

    assert user.json(f"alias set {name} production 1")["version"] == 1
    assert user(f"alias set {name} canary 1").stdout == f"{name}:canary → 1\n"
    assert user.json(f"models show {name}")["aliases"] == {"production": 1, "canary": 1}
    assert user.json(f"alias rm {name} canary") == {"removed": "canary"}
    assert [v["aliases"] for v in user.json(f"versions list {name}")] == [["production"]]

    # Inputs as JSON text, as a .npy file (float64: cast by the server) and as a .json file.
    expected = expected_outputs(module, ROWS)
    labels = [LABELS[i] for i in expected.argmax(axis=1)]
    rows = shlex.quote(json.dumps(ROWS.tolist()))
    by_text = json.loads(
        user(f"predict {name} --version production --json {rows} --json-output").stdout
    )
    np.testing.assert_allclose(by_text["outputs"], expected, atol=1e-5)
    assert (by_text["predictions"], by_text["version"]) == (labels, 1)

    np.save(tmp_path / "rows.npy", ROWS.astype(np.float64))
    table = user(f"predict {name} --file {tmp_path / 'rows.npy'} --output {tmp_path / 'out.npy'}")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
    assert f"{name} version 1" in table.stdout
    for i, label in enumerate(labels):
        assert re.search(rf"│ {i} +│ {label} ", table.stdout)

    (tmp_path / "rows.json").write_text(json.dumps({"inputs": ROWS[0].tolist()}))
    one = json.loads(user(f"predict {name} --file {tmp_path / 'rows.json'} --json-output").stdout)
    assert one["predictions"] == labels[:1]

    # The usage report counts the three calls: 2 + 2 + 1 rows.
    mine = {m["model"]: m for m in user.json("usage")["models"]}
    assert (mine[name]["totals"]["predictions"], mine[name]["totals"]["rows"]) == (3, 5)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    hourly = user.json(f"usage --from {yesterday} --granularity hour")
    assert hourly["granularity"] == "hour"
    assert sum(b["rows"] for b in mine[name]["buckets"]) == 5
    assert name in user("usage").stdout

    # Delete asks first; without a yes, nothing is deleted.
    assert "Aborted" in user(f"models delete {name}", stdin="n\n", code=1).stderr
    assert user.json(f"models delete {name} --yes") == {"deleted": name}
    gone = user(f"models show {name}", code=1)
    assert gone.stderr == f"error: Not found: No model named '{name}'.\n"


def test_datasets_upload_list_and_remove(user: Shell, tmp_path: Path) -> None:
    rows = ["a,b,label", *(f"{i},{i * 2 % 7},{'xy'[i % 2]}" for i in range(20))]
    (tmp_path / "small.csv").write_text("\n".join(rows) + "\n")
    uploaded = user.json(
        f"datasets upload {tmp_path / 'small.csv'} --name small --task classification"
        " --label-column label"
    )
    assert (uploaded["rows"], uploaded["input_shape"], uploaded["classes"]) == (20, [2], ["x", "y"])
    listed = {d["id"]: d for d in user.json("datasets list")}
    assert uploaded["id"] in listed
    assert "builtin:iris" in listed
    assert uploaded["id"] in user("datasets list").stdout

    assert user(f"datasets rm {uploaded['id']}").stdout == f"deleted {uploaded['id']}\n"
    assert uploaded["id"] not in {d["id"] for d in user.json("datasets list")}


def test_train_follow_shows_progress_curve_and_result(user: Shell) -> None:
    name = unique("cli-train")
    followed = user(f"train {name} --dataset builtin:iris --architecture mlp --epochs 3 --follow")
    lines = followed.stdout.splitlines()
    assert re.fullmatch(rf"training [0-9a-f-]{{36}} of {name}: (queued|running)", lines[0])
    # Piped, each epoch is a line of its own.
    progress = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in progress] == ["1/3", "2/3", "3/3"]
    for line in progress:
        assert re.fullmatch(
            r"epoch \d/3  train loss \d+\.\d{4}  val loss \d+\.\d{4}  ETA \d+s", line
        )
    # The loss curve with its legend, the test-split metrics and the new version.
    assert sum("●" in line for line in lines) >= 3
    assert any(line.strip() == "● train loss   ○ val loss" for line in lines)
    accuracy = next(line for line in lines if line.startswith("accuracy "))
    assert 0.0 < float(accuracy.split()[1]) <= 1.0
    assert lines[-1] == f"{name} version 1 is ready"

    # Without --follow: the job as queued. A fine-tune of that version, pooling two datasets.
    started = user.json(
        f"train {name} --dataset builtin:iris --dataset builtin:iris --base-version 1 --epochs 1"
    )
    assert started["status"] in ("queued", "running", "succeeded")
    assert (started["model"], started["base_version"]) == (name, 1)
    assert started["dataset"] == ["builtin:iris", "builtin:iris"]
    human = user(f"train {name} --dataset builtin:iris --base-version 1 --epochs 1")
    assert re.fullmatch(r"training [0-9a-f-]{36} (queued|running)\n", human.stdout)


def test_errors_exit_1_with_the_problem_and_misuse_exits_2(
    user: Shell, shell: Shell, weights: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    missing = unique("nothing")
    unknown = user(f"predict {missing} --json '[1, 2, 3, 4]'", code=1)
    assert unknown.stderr == f"error: Not found: No model named '{missing}'.\n"
    assert unknown.stdout == ""

    invalid = user("models create 'Not A Slug' --task classification", code=1)
    first, *fields = invalid.stderr.splitlines()
    assert first.startswith("error: Invalid input")
    assert any(line.startswith("  name: ") for line in fields)

    # Misuse is caught before anything is sent: exit 2, and the option named.
    (tmp_path / "rows.txt").write_text("[1, 2, 3, 4]")
    for command, said in [
        (f"predict {missing} --json '[1, 2'", "not valid JSON"),
        (f"predict {missing}", "give exactly one of them"),
        (f"predict {missing} --json '{{\"rows\": []}}'", '"inputs"'),
        (f"predict {missing} --file {tmp_path / 'absent.npy'}", "does not exist"),
        (f"predict {missing} --file {tmp_path / 'rows.txt'}", "must be a .npy or a .json file"),
        (
            f"models push {missing} --weights {weights[1]} --architecture mlp --config '[1]'",
            "must be a JSON object",
        ),
        (f"train {missing} --dataset builtin:iris", "--base-version"),
        ("usage --granularity week", "week"),
    ]:
        result = user(command, code=2)
        assert said in result.stderr, (command, result.stderr)

    # No key anywhere: a usage error that says how to get one.
    assert "aiaas login" in shell("models list", code=2).stderr
    port = free_port()
    down = user(f"models list --base-url http://127.0.0.1:{port}", code=1)
    assert down.stderr.startswith(f"error: cannot reach http://127.0.0.1:{port} (")
    assert len(down.stderr.splitlines()) == 1


def test_client_commands_import_nothing_of_the_server(
    user: Shell, weights: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    """The commands a laptop runs load the SDK alone: no torch, web framework or database."""
    name = unique("cli-light")
    user(f"models create {name} --task classification --labels {','.join(LABELS)}")
    np.save(tmp_path / "rows.npy", ROWS)
    runs = [
        "models list --help",
        f"models push {name} --weights {weights[1]} --architecture mlp --config {CONFIG}",
        f"predict {name} --file {tmp_path / 'rows.npy'}",
        f"train {name} --dataset builtin:iris --base-version 1 --epochs 1 --follow",
    ]
    heavy = ["torch", "fastapi", "starlette", "sqlalchemy", "celery", "redis", "uvicorn"]
    heavy += ["aiaas.main", "aiaas.db", "aiaas.config"]
    script = (
        "import shlex, sys\n"
        "from aiaas.cli.main import app\n"
        f"for command in {runs!r}:\n"
        "    try:\n"
        "        app(shlex.split(command))\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), (command, exc.code)\n"
        f"print('loaded:', [m for m in {heavy!r} if m in sys.modules])\n"
    )
    result = user.python(["-c", script])
    assert result.returncode == 0, result.stderr
    assert f"{name} version 2 is ready" in result.stdout
    assert result.stdout.splitlines()[-1] == "loaded: []"
