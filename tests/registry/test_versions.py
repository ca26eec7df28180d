"""Uploading versions: each family round-trips, numbering, reads, config and spec errors."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import pytest
import safetensors.torch
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from aiaas.ml.architectures import ARCHITECTURES, build_model, parse_config
from aiaas.registry.models import ModelVersion
from aiaas.storage import LocalArtifactStore
from tests.factories import Account, post_version
from tests.helpers import assert_problem
from tests.registry.conftest import example_weights, files_under

Upload = Callable[..., Response]
CreateModel = Callable[..., dict[str, Any]]

EXPECTED_INPUT = {"mlp": [64], "cnn": [1, 8, 8], "rnn": [50, 1]}


def _state_dict_bytes(module: torch.nn.Module) -> bytes:
    out: bytes = safetensors.torch.save(module.state_dict())
    return out


@pytest.mark.parametrize("family", ["mlp", "cnn", "rnn"])
def test_each_family_round_trips_from_its_example_config(
    family: str,
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    upload: Upload,
    store: LocalArtifactStore,
) -> None:
    architectures = client.get("/v1/architectures").json()["data"]
    example = next(a for a in architectures if a["name"] == family)["example_config"]
    parsed = parse_config(family, example, max_parameters=10**9)
    module = build_model(family, parsed)
    weights = _state_dict_bytes(module)
    create_model(f"{family}-model", task="classification")

    response = upload(f"{family}-model", family, example, weights=weights)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    assert body["architecture"] == family
    assert body["input"] == {"shape": EXPECTED_INPUT[family], "dtype": "float32"}
    assert body["parameters"] == sum(p.numel() for p in module.parameters())
    assert body["sha256"] == hashlib.sha256(weights).hexdigest()
    assert body["size_bytes"] == len(weights)
    assert body["metrics"] is None
    assert body["aliases"] == []
    # The config is kept as validated, defaults filled in.
    assert body["config"] == parsed.model_dump(mode="json")
    # What was stored is the exact upload, and the owner can fetch it back byte for byte.
    assert store.get_bytes(body["sha256"]) == weights
    download = client.get(f"/v1/models/{family}-model/versions/1/weights", headers=account.headers)
    assert download.status_code == 200
    assert download.content == weights
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["etag"] == f'"{body["sha256"]}"'
    assert f"{family}-model-v1.safetensors" in download.headers["content-disposition"]


def test_rnn_without_seq_len_has_a_variable_axis(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    config = {**ARCHITECTURES["rnn"].example_config, "seq_len": None, "cell": "gru"}
    create_model("waves", task="regression")

    response = upload("waves", "rnn", config)

    assert response.status_code == 201, response.text
    assert response.json()["input"] == {"shape": [None, 1], "dtype": "float32"}
    assert '"shape":[null,1]' in response.text.replace(" ", "")
    again = client.get("/v1/models/waves/versions/1", headers=account.headers).json()
    assert again["input"]["shape"] == [None, 1]


def test_architectures_are_public_and_describe_each_family(client: TestClient) -> None:
    response = client.get("/v1/architectures")

    assert response.status_code == 200
    data = response.json()["data"]
    assert sorted(a["name"] for a in data) == ["cnn", "mlp", "rnn"]
    for arch in data:
        assert set(arch) >= {"name", "description", "config_schema", "example_config", "input"}
        assert arch["description"]
        assert arch["config_schema"]["type"] == "object"
        assert set(arch["example_config"]) <= set(arch["config_schema"]["properties"])
        assert arch["input"] == {"shape": EXPECTED_INPUT[arch["name"]], "dtype": "float32"}


def test_versions_are_numbered_per_model(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("first")
    create_model("second")
    assert [upload("first").json()["version"] for _ in range(3)] == [1, 2, 3]
    assert upload("second").json()["version"] == 1

    listed = client.get("/v1/models/first/versions", headers=account.headers)
    assert listed.status_code == 200
    assert sorted(v["version"] for v in listed.json()["data"]) == [1, 2, 3]
    assert listed.json()["next_cursor"] is None
    paged = client.get("/v1/models/first/versions?limit=2", headers=account.headers).json()
    assert len(paged["data"]) == 2
    assert paged["next_cursor"] is not None
    model = client.get("/v1/models/first", headers=account.headers).json()
    assert model["latest_version"] == 3


def test_get_one_version_and_unknown_versions(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model()
    first = upload("digits").json()
    upload("digits", config={"input_dim": 64, "hidden": [16], "output_dim": 10})

    got = client.get("/v1/models/digits/versions/1", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == first
    second = client.get("/v1/models/digits/versions/2", headers=account.headers).json()
    assert second["config"]["hidden"] == [16]
    assert second["parameters"] == 64 * 16 + 16 + 16 * 10 + 10

    assert_problem(client.get("/v1/models/digits/versions/3", headers=account.headers), 404)
    assert_problem(client.get("/v1/models/digits/versions/3/weights", headers=account.headers), 404)
    assert_problem(client.get("/v1/models/digits/versions/0", headers=account.headers), 422)
    assert_problem(client.get("/v1/models/nope/versions/1", headers=account.headers), 404)


def test_labels_come_from_the_model_or_the_spec_and_must_fit_the_outputs(
    create_model: CreateModel, upload: Upload, count_rows: Callable[[type[Any]], int]
) -> None:
    labels = [f"class-{i}" for i in range(10)]
    create_model("labelled", labels=labels)
    assert upload("labelled").json()["labels"] == labels
    spec_labels = [str(i) for i in range(10)]
    assert upload("labelled", labels=spec_labels).json()["labels"] == spec_labels

    body = assert_problem(upload("labelled", labels=["a", "b"]), 422)
    assert body["errors"][0]["loc"] == ["spec", "labels"]
    assert "10" in body["errors"][0]["msg"]
    assert count_rows(ModelVersion) == 2


def _problem_locs(response: Response) -> list[list[Any]]:
    body = assert_problem(response, 422)
    return [e["loc"] for e in body["errors"]]


@pytest.mark.parametrize(
    ("architecture", "config", "loc"),
    [
        ("mlp", {"input_dim": 0, "output_dim": 10}, ["spec", "config", "input_dim"]),
        (
            "mlp",
            {"input_dim": 64, "hidden": [0], "output_dim": 10},
            ["spec", "config", "hidden", 0],
        ),
        ("mlp", {"input_dim": "64", "output_dim": 10}, ["spec", "config", "input_dim"]),
        ("mlp", {"input_dim": 64, "output_dim": 10, "depth": 3}, ["spec", "config", "depth"]),
        ("mlp", {"output_dim": 10}, ["spec", "config", "input_dim"]),
        (
            "rnn",
            {
                "cell": "lstm",
                "input_size": 1,
                "hidden_size": 8,
                "seq_len": 5,
                "output_dim": 2,
                "dropout": 0.5,
            },
            ["spec", "config", "dropout"],
        ),
        (
            "cnn",
            {
                "in_channels": 1,
                "height": 8,
                "width": 8,
                "output_dim": 2,
                "blocks": [{"channels": 4, "kernel": 3, "padding": 3}],
            },
            ["spec", "config", "blocks", 0, "padding"],
        ),
    ],
)
def test_config_that_cannot_build_names_the_field(
    architecture: str,
    config: dict[str, Any],
    loc: list[Any],
    create_model: CreateModel,
    upload: Upload,
    count_rows: Callable[[type[Any]], int],
    store: LocalArtifactStore,
) -> None:
    create_model()
    # Weights that would fit nothing: the config is refused before they matter.
    response = upload("digits", architecture, config, weights=example_weights("mlp"))

    assert loc in _problem_locs(response)
    assert count_rows(ModelVersion) == 0
    assert list(store.iter_digests()) == []


@pytest.mark.parametrize(
    ("height", "blocks", "index"),
    [
        # kernel 5 without padding on a 3x3 image: the convolution itself is empty.
        (3, [{"channels": 4, "kernel": 5, "padding": 0}], 0),
        # The example's blocks on a 2x2 image: block 0 pools it to 1x1, block 1 pools it to 0x0.
        (2, [{"channels": 8, "kernel": 3}, {"channels": 16, "kernel": 3}], 1),
        (
            8,
            [
                {"channels": 4, "kernel": 3},
                {"channels": 4, "kernel": 3, "pool": 3},
                {"channels": 4, "kernel": 1},
            ],
            2,
        ),
    ],
)
def test_cnn_block_with_empty_output_is_named(
    height: int,
    blocks: list[dict[str, Any]],
    index: int,
    create_model: CreateModel,
    upload: Upload,
    count_rows: Callable[[type[Any]], int],
) -> None:
    config = {
        "in_channels": 1,
        "height": height,
        "width": height,
        "blocks": blocks,
        "output_dim": 10,
    }
    create_model()

    response = upload("digits", "cnn", config, weights=example_weights("cnn"))

    body = assert_problem(response, 422)
    assert [e["loc"] for e in body["errors"]] == [["spec", "config", "blocks", index, "kernel"]]
    assert f"block {index + 1}" in body["errors"][0]["msg"]
    assert count_rows(ModelVersion) == 0


def test_config_over_the_parameter_limit_gives_count_and_limit(
    create_model: CreateModel,
    upload: Upload,
    count_rows: Callable[[type[Any]], int],
    store: LocalArtifactStore,
) -> None:
    # 65536*1024 + 1024 + 1024*10 + 10 = 67,120,138 parameters: over the default 50,000,000.
    config = {"input_dim": 65536, "hidden": [1024], "output_dim": 10}
    create_model()

    response = upload("digits", "mlp", config, weights=example_weights("mlp"))

    body = assert_problem(response, 422)
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["loc"][-1] == "config"
    assert error["loc"] == ["spec", "config"]
    assert "67120138" in error["msg"]
    assert "50000000" in error["msg"]
    assert count_rows(ModelVersion) == 0
    assert list(store.iter_digests()) == []


def test_parameter_limit_comes_from_the_settings(
    app: FastAPI, create_model: CreateModel, upload: Upload
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"max_model_parameters": 2000})
    create_model()
    # The example MLP has 64*32+32+32*10+10 = 2410 parameters.
    body = assert_problem(upload("digits"), 422)
    assert "2410" in body["errors"][0]["msg"]
    assert "2000" in body["errors"][0]["msg"]
    small = {"input_dim": 64, "hidden": [16], "output_dim": 10}
    assert upload("digits", config=small).status_code == 201


@pytest.mark.parametrize(
    ("spec", "loc"),
    [
        ("not json", ["spec"]),
        ('{"config": {}}', ["spec", "architecture"]),
        ('{"architecture": "mlp", "config": {}, "seed": 1}', ["spec", "seed"]),
        ('{"architecture": "transformer", "config": {}}', ["spec", "architecture"]),
    ],
)
def test_bad_spec_part_is_refused(
    spec: str,
    loc: list[str],
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    count_rows: Callable[[type[Any]], int],
) -> None:
    create_model()
    response = post_version(
        client, "digits", spec=spec, weights=example_weights("mlp"), headers=account.headers
    )

    assert loc in _problem_locs(response)
    assert count_rows(ModelVersion) == 0


def test_missing_multipart_parts_are_refused(
    client: TestClient, account: Account, create_model: CreateModel
) -> None:
    create_model()
    no_file = client.post(
        "/v1/models/digits/versions",
        data={"spec": '{"architecture": "mlp", "config": {}}'},
        files={"other": ("x", b"x")},
        headers=account.headers,
    )
    assert any("weights" in e["loc"] for e in assert_problem(no_file, 422)["errors"])
    no_spec = client.post(
        "/v1/models/digits/versions",
        files={"weights": ("model.safetensors", io.BytesIO(example_weights("mlp")))},
        headers=account.headers,
    )
    assert any("spec" in e["loc"] for e in assert_problem(no_spec, 422)["errors"])


def test_half_precision_weights_are_accepted_as_uploaded(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    module = build_model(
        "mlp", parse_config("mlp", {"input_dim": 4, "output_dim": 2}, max_parameters=100)
    )
    weights = safetensors.torch.save({k: v.half() for k, v in module.state_dict().items()})
    create_model()

    response = upload("digits", config={"input_dim": 4, "output_dim": 2}, weights=weights)

    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(weights).hexdigest()
    download = client.get("/v1/models/digits/versions/1/weights", headers=account.headers)
    assert download.content == weights


def test_successful_upload_leaves_one_blob_and_no_temp_file(
    create_model: CreateModel, upload: Upload, store: LocalArtifactStore
) -> None:
    create_model()
    sha = upload("digits").json()["sha256"]

    assert list(store.iter_digests()) == [sha]
    assert files_under(store.root) == [f"sha256/{sha[:2]}/{sha}"]
