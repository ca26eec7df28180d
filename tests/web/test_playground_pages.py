"""The model page's playground and upload form through the ASGI app: predictions from a .npy
body, explanations by the signed-in account, the upload form's generated config fields, and a
fine-tune's version page beside its base. (Chromium: tests/web/test_playground_browser.py.)"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from aiaas.ml.weights import save_safetensors
from tests.factories import (
    MLP_CONFIG,
    Account,
    create_model,
    publish,
    register,
    seeded_module,
    unique,
    wait_training,
)
from tests.web.conftest import csrf_of, sign_in

NPY = "application/x-npy"
CNN_CONFIG: dict[str, Any] = {
    "in_channels": 1,
    "height": 8,
    "width": 8,
    "blocks": [{"channels": 2, "kernel": 3}],
    "hidden": [8],
    "output_dim": 3,
}


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def shape(value: Any) -> list[int]:
    return list(np.asarray(value).shape)


def test_the_playground_predicts_from_a_npy_body(client: TestClient, account: Account) -> None:
    published = publish(client, account, labels=["a", "b", "c"])
    token = csrf_of(client, f"/models/{published.name}")
    url = f"/models/{published.name}/playground"
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    headers = {"Content-Type": NPY, "X-CSRF-Token": token}
    answer = client.post(url, content=npy(rows), headers=headers)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    assert set(answer.json()["predictions"]) <= {"a", "b", "c"}

    wrong = client.post(url, content=npy(np.zeros((1, 3))), headers=headers)
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")
    unknown = client.post(url, content=b"1,2,3,4", headers={**headers, "Content-Type": "text/csv"})
    assert unknown.status_code == 415


def test_an_explanation_is_shaped_like_its_input(client: TestClient, account: Account) -> None:
    vector = publish(client, account, labels=["a", "b", "c"])
    token = csrf_of(client, f"/models/{vector.name}")
    headers = {"X-CSRF-Token": token}
    url = f"/models/{vector.name}/playground/explain"
    answer = client.post(url, json={"inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers=headers)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert shape(found["attributions"]) == [1, 4]
    assert found["method"] == "integrated_gradients"
    assert found["target"][0] in ("a", "b", "c")
    assert found["predictions"][0] == found["target"][0]

    rows = np.ones((2, 4), dtype=np.float32)
    by_npy = client.post(
        f"{url}?method=saliency&target=b",
        content=npy(rows),
        headers={**headers, "Content-Type": NPY},
    )
    assert by_npy.status_code == 200, by_npy.text
    assert shape(by_npy.json()["attributions"]) == [2, 4]
    assert by_npy.json()["method"] == "saliency"
    assert by_npy.json()["target"] == ["b", "b"]

    image = publish(client, account, architecture="cnn", config=CNN_CONFIG)
    page = client.get(f"/models/{image.name}").text
    assert 'id="draw"' in page
    assert re.search(r'<button type="button" id="explain"[^>]*>Explain</button>', page)
    drawn = client.post(
        f"/models/{image.name}/playground/explain",
        json={"inputs": [np.zeros((1, 8, 8)).tolist()], "method": "occlusion"},
        headers=headers,
    )
    assert drawn.status_code == 200, drawn.text
    assert shape(drawn.json()["attributions"]) == [1, 1, 8, 8]

    occluded = client.post(
        url, json={"inputs": [[1, 2, 3, 4]], "method": "occlusion"}, headers=headers
    )
    assert occluded.status_code == 422
    assert "occlusion" in occluded.text


def test_an_explanation_needs_the_sessions_token(client: TestClient, account: Account) -> None:
    published = publish(client, account)
    url = f"/models/{published.name}/playground/explain"
    body = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    assert client.post(url, json=body).status_code == 403
    assert client.post(url, json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403

    other = register(client)
    private = publish(client, other)
    token = csrf_of(client, "/models")
    hidden = client.post(
        f"/models/{private.name}/playground/explain", json=body, headers={"X-CSRF-Token": token}
    )
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("application/problem+json")


def field_note(page: str, name: str) -> str | None:
    """The note beside the generated field ``name``, when it says what is wrong."""
    found = re.search(
        rf'<input id="f-{re.escape(name)}"[^>]*aria-invalid="true">\s*'
        rf'<p class="note error-note" id="f-{re.escape(name)}-note">([^<]*)</p>',
        page,
    )
    return found.group(1) if found else None


def test_the_upload_form_is_generated_from_each_config_schema(
    client: TestClient, account: Account
) -> None:
    name = create_model(client, account, unique("web-fields"))["name"]
    page = client.get(f"/models/{name}").text
    for arch in ("mlp", "cnn", "rnn"):
        assert f'<fieldset class="group config-fields" id="cfg-{arch}"' in page
    assert re.search(r'<input id="f-cfg.mlp.input_dim"[^>]*value="64"[^>]*min="1"', page)
    assert re.search(r'<select id="f-cfg.rnn.cell"[^>]*>\s*<option value="lstm" selected>', page)
    assert 'name="cfg.cnn.blocks"' in page  # arrays of objects: a JSON text field
    # Without the page's script every family shows: the note says which one counts.
    assert 'id="config-fields-note"' in page
    for field_id in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', page):
        assert f'for="{field_id}"' in page, f"{field_id} has no label"

    token = csrf_of(client, f"/models/{name}")
    weights = save_safetensors(seeded_module())
    form = {
        "csrf_token": token,
        "architecture": "mlp",
        "config": "",
        "cfg.mlp.input_dim": "4",
        "cfg.mlp.hidden": "8",
        "cfg.mlp.output_dim": "3",
        "cfg.mlp.activation": "relu",
        "cfg.mlp.dropout": "0",
        # Another family's fields (sent when the page's script does not disable them) count
        # for nothing.
        "cfg.cnn.height": "-1",
    }
    bad = client.post(
        f"/models/{name}/versions",
        data={**form, "cfg.mlp.dropout": "1.5", "cfg.mlp.hidden": "8, 0"},
        files={"weights": ("w.safetensors", weights)},
    )
    assert bad.status_code == 422
    assert field_note(bad.text, "cfg.mlp.dropout")
    assert "greater than or equal to 1" in (field_note(bad.text, "cfg.mlp.hidden") or "")
    assert field_note(bad.text, "cfg.mlp.input_dim") is None
    assert re.search(r'id="f-cfg.mlp.dropout"[^>]*value="1.5"', bad.text)  # what was typed stays
    assert not re.search(r'class="field invalid">\s*<label for="f-config">', bad.text)
    assert client.get(f"/v1/models/{name}/versions", headers=account.headers).json()["data"] == []

    done = client.post(
        f"/models/{name}/versions",
        data=form,
        files={"weights": ("w.safetensors", weights)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    version = client.get(f"/v1/models/{name}/versions/1", headers=account.headers).json()
    assert {k: version["config"][k] for k in MLP_CONFIG} == MLP_CONFIG

    # The JSON text, when typed, wins over the fields.
    by_json = client.post(
        f"/models/{name}/versions",
        data={**form, "cfg.mlp.input_dim": "nonsense", "config": json.dumps(MLP_CONFIG)},
        files={"weights": ("w.safetensors", save_safetensors(seeded_module(seed=1)))},
        follow_redirects=False,
    )
    assert by_json.status_code == 303, by_json.text


def test_a_fine_tunes_page_shows_its_base_versions_metrics_beside_its_own(
    live_client: TestClient,
) -> None:
    # Trainings run on threads of their own: they need a database whose commits stick.
    client = live_client
    account = register(client)
    sign_in(client, account)
    name = unique("web-tune")
    token = csrf_of(client, "/trainings/new")
    form = {"csrf_token": token, "model": name, "dataset": "builtin:iris", "hp.seed": "3"}
    for extra in (
        {"start": "scratch", "architecture": "mlp", "hp.epochs": "3"},
        {"start": "finetune", "base_version": "1", "hp.epochs": "1"},
    ):
        started = client.post("/trainings/new", data={**form, **extra}, follow_redirects=False)
        assert started.status_code == 303, started.text
        done = wait_training(client, started.headers["location"].rsplit("/", 1)[1], account.headers)
        assert done["status"] == "succeeded", done

    tuned = client.get(f"/models/{name}/versions/2").text
    table = re.search(r'<table class="list metrics" id="metrics-table">.*?</table>', tuned, re.S)
    assert table
    heads = re.findall(r'<th scope="col">(.*?)</th>', table.group(0), re.S)
    assert heads[1] == "v2 (this version)"
    assert f'<a href="/models/{name}/versions/1">v1</a> (base)' in heads[2]
    accuracy = re.search(r'<th scope="row">accuracy</th>(.*?)</tr>', table.group(0), re.S)
    assert accuracy
    assert len(re.findall(r"<td>\d\.\d{4}</td>", accuracy.group(1))) == 2

    base = client.get(f"/models/{name}/versions/1").text
    assert "(base)" not in base
    assert '<th scope="col">Test split</th>' in base
