"""Model cards: what the card of a trained, fine-tuned or uploaded version records, its
Markdown form and the escaping of user text in it, the owner's text, who may read and change
it, and the migration that added it."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

import aiaas.db
from aiaas.client import AiaasError, Client, ModelCard
from aiaas.db import make_engine
from aiaas.migrate import downgrade, upgrade
from aiaas.registry import cards
from aiaas.registry.schemas import CARD_TEXT_MAX
from tests.conftest import scratch_database
from tests.factories import (
    Account,
    register,
    unique,
    upload_dataset,
    upload_version,
    wait_training,
)
from tests.helpers import assert_problem, bearer

CreateModel = Callable[..., dict[str, Any]]
Upload = Callable[..., Response]

IRIS = ["setosa", "versicolor", "virginica"]
# Nothing of this may come out of a card's Markdown as markup: a tag, a link, an image, a
# heading, a list, a table, code, emphasis, or an address GitHub would link by itself.
HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](https://evil.example) "
    "![pixel](https://evil.example/p.png) <https://evil.example> www.evil.example "
    "mail@evil.example `code` **bold** _em_ ~~gone~~ | a | b | &amp; &lt;b&gt;\n"
    "# heading\n- item\n1. item\n> quote\n===\n    indented\n```\nfence\n```"
)
# A second line, so the Markdown of a card also keeps the owner's line breaks.
INTENDED = "Sorting iris flowers in teaching.\nNot for any decision about a real plant."


def _card(client: TestClient, name: str, ref: str | int, headers: dict[str, str]) -> Any:
    response = client.get(f"/v1/models/{name}/versions/{ref}/card", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def _markdown(client: TestClient, name: str, ref: str | int, headers: dict[str, str]) -> str:
    response = client.get(
        f"/v1/models/{name}/versions/{ref}/card",
        headers={**headers, "Accept": "text/markdown"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/markdown")
    markdown: str = response.text
    return markdown


def _train(client: TestClient, owner: Account, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/trainings", json=body, headers=owner.headers)
    assert response.status_code == 202, response.text
    done = wait_training(client, response.json()["id"], owner.headers)
    assert done["status"] == "succeeded", done
    return done


def _rendered(markdown: str) -> str:
    """The HTML a CommonMark renderer with GitHub's tables makes of ``markdown``."""
    markdown_it = pytest.importorskip("markdown_it")
    renderer = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    rendered: str = renderer.render(markdown)
    return rendered


# Every tag the card's own structure makes; anything else came from user text.
CARD_TAGS = {"h1", "h2", "h3", "p", "ul", "li", "em", "br", "pre", "code"} | {
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}


def _tags(rendered: str) -> set[str]:
    return {m.lower() for m in re.findall(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)", rendered)}


# ---- trained and fine-tuned versions ------------------------------------------------------


@pytest.fixture
def trainer(live_client: TestClient) -> Account:
    return register(live_client)


def test_a_trained_version_card_records_data_hyperparameters_and_metrics(
    live_client: TestClient, trainer: Account
) -> None:
    client = live_client
    name = unique("iris-card")
    done = _train(
        client,
        trainer,
        model=name,
        dataset="builtin:iris",
        architecture="mlp",
        hyperparameters={"epochs": 3, "seed": 3},
    )

    card = _card(client, name, 1, trainer.headers)

    assert card["source"] == "training"
    assert card["model"] == name
    assert card["version"] == 1
    assert card["architecture"] == "mlp"
    assert card["config"]["input_dim"] == 4
    assert card["parameters"] > 0
    assert card["labels"] == IRIS
    assert card["input"] == {
        "shape": [4],
        "dtype": "float32",
        # Iris's smallest measurement is a petal 0.1 cm wide, its largest a sepal 7.9 cm long.
        "value_range": {"min": 0.1, "max": 7.9},
    }
    training = card["training"]
    assert training["datasets"] == [{"id": "builtin:iris", "name": "Iris flowers", "rows": 150}]
    assert training["hyperparameters"] == done["hyperparameters"]
    assert training["hyperparameters"]["epochs"] == 3
    assert sum(training["splits"].values()) == 150
    assert training["epochs_run"] == 3
    assert training["base_version"] is None
    assert training["base_metrics"] is None
    metrics = card["metrics"]
    assert metrics["evaluated_on"] == "test"
    assert {"accuracy", "precision", "recall", "f1", "per_class"} <= set(metrics)
    assert "history" not in metrics
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 3
    assert all(len(row) == 3 for row in matrix)
    assert sum(map(sum, matrix)) == training["splits"]["test"]
    assert card["created_by"] == {"owned": True, "email": trainer.email}
    assert datetime.fromisoformat(card["created_at"]) <= datetime.now(UTC)
    assert card["intended_use"] is None
    assert card["limitations"] is None
    assert card["not_recorded"] == []

    markdown = _markdown(client, name, 1, trainer.headers)
    assert markdown.startswith(f"# {cards.escape(name)}, version 1\n")
    assert f"Made by you ({cards.escape(trainer.email)})" in markdown
    assert "Value range in the training data: 0.1 to 7.9" in markdown
    assert "| builtin\\:iris | Iris flowers | 150 |" in markdown
    assert "| epochs | 3 |" in markdown
    assert "### Confusion matrix" in markdown
    first_row = " | ".join(str(n) for n in matrix[0])
    assert f"| setosa | {first_row} |" in markdown
    assert markdown.count("_Not stated by the owner._") == 2
    rendered = _rendered(markdown)
    assert _tags(rendered) <= CARD_TAGS
    assert ">virginica</th>" in rendered


def test_a_fine_tune_names_its_base_and_each_pooled_dataset(
    live_client: TestClient, trainer: Account
) -> None:
    client = live_client
    name = unique("iris-tuned")
    _train(
        client,
        trainer,
        model=name,
        dataset="builtin:iris",
        architecture="mlp",
        hyperparameters={"epochs": 2, "seed": 1},
    )
    extra_name = "more <b>iris</b> [see](https://evil.example)"
    rows = "\n".join(
        [
            "a,b,c,d,label",
            "9.5,3.0,1.3,0.2,setosa",
            "6.1,2.8,4.7,1.2,versicolor",
            "5.0,3.4,1.5,0.2,setosa",
            "6.3,3.3,6.0,2.5,virginica",
        ]
    )
    uploaded = upload_dataset(
        client, trainer, rows.encode(), name=extra_name, content_type="text/csv"
    )
    assert uploaded.status_code == 201, uploaded.text
    extra = uploaded.json()["id"]

    _train(
        client,
        trainer,
        model=name,
        base_version=1,
        dataset=["builtin:iris", extra],
        hyperparameters={"epochs": 1, "learning_rate": 0.001},
    )

    card = _card(client, name, 2, trainer.headers)
    training = card["training"]
    assert training["base_version"] == 1
    assert {"accuracy", "confusion_matrix"} <= set(training["base_metrics"])
    assert training["datasets"] == [
        {"id": "builtin:iris", "name": "Iris flowers", "rows": 150},
        {"id": extra, "name": extra_name, "rows": 4},
    ]
    assert sum(training["splits"].values()) == 154
    # The upload's 9.5 is above anything in iris.
    assert card["input"]["value_range"] == {"min": 0.1, "max": 9.5}
    assert _card(client, name, 1, trainer.headers)["training"]["base_version"] is None

    markdown = _markdown(client, name, "latest", trainer.headers)
    assert "Fine-tuned from version 1." in markdown
    assert "| Metric | This version | Base version 1, same rows |" in markdown
    assert f"| {cards.escape(extra_name)} | 4 |" in markdown
    rendered = _rendered(markdown)
    assert _tags(rendered) <= CARD_TAGS
    assert "more &lt;b&gt;iris&lt;/b&gt; [see](https://evil.example)" in rendered


# ---- uploaded versions --------------------------------------------------------------------


def test_an_uploaded_version_card_says_what_is_not_recorded(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("plain", visibility="public")
    assert upload("plain").status_code == 201

    card = _card(client, "plain", 1, account.headers)

    assert card["source"] == "upload"
    assert card["training"] is None
    assert card["metrics"] is None
    assert card["input"]["value_range"] is None
    assert card["input"]["shape"] == [64]
    assert card["not_recorded"] == ["input.value_range", "training", "metrics"]
    assert card["created_by"] == {"owned": True, "email": account.email}
    markdown = _markdown(client, "plain", 1, account.headers)
    assert "- Value range: not recorded" in markdown
    assert "Not recorded: this version was uploaded, not trained here." in markdown
    assert "Not recorded: this version was uploaded without metrics." in markdown
    assert ", uploaded." in markdown


def test_others_see_a_public_card_without_the_owner_email(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("shared", visibility="public")
    assert upload("shared").status_code == 201
    other = register(client)

    card = client.get("/v1/models/shared/versions/1/card", headers=other.headers)
    markdown = client.get(
        "/v1/models/shared/versions/1/card?format=markdown", headers=other.headers
    )

    assert card.status_code == markdown.status_code == 200
    assert card.json()["created_by"] == {"owned": False, "email": None}
    assert "Made by the model's owner on " in markdown.text
    for answer in (card, markdown):
        assert account.email not in answer.text
        assert account.email.split("@")[0] not in answer.text


# ---- the Markdown form --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "query", "markdown"),
    [
        (None, "", False),
        ("text/markdown", "", True),
        ("text/markdown; charset=utf-8", "", True),
        ("application/json", "?format=markdown", True),
        ("text/markdown", "?format=json", False),
        ("text/markdown;q=0.5, application/json", "", False),
        ("application/json;q=0.2, text/markdown;q=0.9", "", True),
        ("*/*", "", False),
        ("text/*", "", True),
        ("text/html, */*;q=0.8", "", False),
    ],
)
def test_the_form_follows_the_format_parameter_then_the_accept_header(
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    upload: Upload,
    accept: str | None,
    query: str,
    markdown: bool,
) -> None:
    create_model("forms")
    assert upload("forms").status_code == 201
    headers = dict(account.headers)
    if accept is not None:
        headers["Accept"] = accept

    response = client.get(f"/v1/models/forms/versions/1/card{query}", headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["vary"] == "Accept"
    kind = response.headers["content-type"]
    if markdown:
        assert kind == "text/markdown; charset=utf-8"
        assert response.text.startswith("# forms, version 1\n")
    else:
        assert kind.startswith("application/json")
        assert response.json()["model"] == "forms"


def test_an_unknown_format_is_refused(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("formats")
    assert upload("formats").status_code == 201
    answer = client.get("/v1/models/formats/versions/1/card?format=html", headers=account.headers)
    problem = assert_problem(answer, 422)
    assert problem["errors"][0]["loc"] == ["query", "format"]


def test_owner_text_and_labels_cannot_inject_markup(
    client: TestClient, account: Account, create_model: CreateModel
) -> None:
    name = create_model("hostile")["name"]
    labels = ["<b>bold</b>", "[x](https://evil.example)", "a|b\n# c"]
    upload_version(client, account, name, labels=labels)
    edited = client.patch(
        f"/v1/models/{name}/versions/1/card",
        json={"intended_use": HOSTILE, "limitations": HOSTILE},
        headers=account.headers,
    )
    assert edited.status_code == 200, edited.text
    # The JSON form keeps the text exactly as written: escaping is the Markdown's business.
    assert edited.json()["intended_use"] == HOSTILE

    markdown = _markdown(client, name, 1, account.headers)
    rendered = _rendered(markdown)

    assert _tags(rendered) <= CARD_TAGS
    # The config's code block is the only one, the card's title the only first-level heading,
    # and an upload's card has no table: the user's backticks, hashes and pipes made none.
    assert rendered.count("<pre>") == rendered.count("<code") == 1
    assert rendered.count("<h1>") == 1
    assert "<table>" not in rendered
    assert "href" not in rendered
    for line in HOSTILE.split("\n"):
        shown = html.escape(" ".join(line.split()), quote=False)
        assert shown in rendered.replace("&quot;", '"'), line
    for bare_link in ("https://", "www.", "mail@evil"):
        assert bare_link not in markdown


@pytest.mark.parametrize(
    "text",
    [
        HOSTILE,
        "plain words",
        "back\\slash \\*not em\\* \\\\",
        "1) one 2. two + three - four = five $x$ ~y~ :z: @w {v} !u",
        "<!-- comment --> <?php ?> <![CDATA[x]]> &#x3C;&copy;",
        "trailing spaces   \ttab",
    ],
)
def test_escape_renders_as_the_text_itself(text: str) -> None:
    for line in text.split("\n"):
        rendered = _rendered(cards.escape(line)).strip()
        flat = " ".join(line.split())
        if not flat:
            assert rendered == ""
            continue
        assert rendered[:3] + rendered[-4:] == "<p></p>", rendered
        inner = rendered[3:-4]
        assert "<" not in inner, rendered
        assert html.unescape(inner) == flat


def test_escape_block_keeps_line_breaks_and_paragraphs() -> None:
    rendered = _rendered(cards.escape_block("one *a*\ntwo\n\n\nthree\r\nfour"))
    assert rendered == "<p>one *a*<br />\ntwo</p>\n<p>three<br />\nfour</p>\n"


def test_a_code_block_fence_outlasts_the_backticks_inside() -> None:
    text = 'x ```` y\n````\n{"a": 1}'
    block = cards._fenced(text, "json")
    assert block.startswith("`````json\n")
    assert block.endswith("\n`````")
    rendered = _rendered(block)
    assert rendered.count("<pre>") == 1
    assert html.unescape(rendered).endswith(text + "\n</code></pre>\n")


# ---- the owner's text ---------------------------------------------------------------------


def test_the_owner_sets_changes_and_clears_the_text(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("edited", visibility="public")
    assert upload("edited").status_code == 201
    assert client.put(
        "/v1/models/edited/aliases/prod", json={"version": 1}, headers=account.headers
    ).is_success
    url = "/v1/models/edited/versions/{}/card"

    first = client.patch(
        url.format("prod"),
        json={"intended_use": INTENDED, "limitations": "Trained on 150 flowers."},
        headers=account.headers,
    )
    assert first.status_code == 200, first.text
    assert first.json()["intended_use"] == INTENDED
    assert first.json()["aliases"] == ["prod"]
    card = _card(client, "edited", 1, account.headers)
    assert card["intended_use"] == INTENDED
    assert card["limitations"] == "Trained on 150 flowers."
    # What others see, too.
    assert _card(client, "edited", 1, register(client).headers)["intended_use"] == INTENDED
    markdown = _markdown(client, "edited", 1, account.headers)
    assert (
        "## Intended use\n\nSorting iris flowers in teaching\\.\\\n"
        "Not for any decision about a real plant\\.\n"
    ) in markdown
    assert "## Limitations\n\nTrained on 150 flowers\\.\n" in markdown

    # A field left out stays; null clears one.
    kept = client.patch(url.format(1), json={"limitations": None}, headers=account.headers)
    assert kept.status_code == 200, kept.text
    card = _card(client, "edited", "latest", account.headers)
    assert card["intended_use"] == INTENDED
    assert card["limitations"] is None
    assert client.patch(url.format(1), json={}, headers=account.headers).status_code == 200
    assert _card(client, "edited", 1, account.headers)["intended_use"] == INTENDED
    # The longest text allowed is taken whole.
    longest = "x" * CARD_TEXT_MAX
    assert client.patch(
        url.format(1), json={"limitations": longest}, headers=account.headers
    ).is_success
    assert _card(client, "edited", 1, account.headers)["limitations"] == longest


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"intended_use": "x" * (CARD_TEXT_MAX + 1)}, ["body", "intended_use"]),
        ({"limitations": 42}, ["body", "limitations"]),
        ({"intended_use": "fine", "limitations": "nul \x00 byte"}, ["body", "limitations"]),
        ({"intended_use": "bell \x07"}, ["body", "intended_use"]),
        ({"intended_use": "fine", "description": "x"}, ["body", "description"]),
        (["intended_use"], ["body"]),
    ],
    ids=["too-long", "not-text", "nul", "control", "unknown-field", "not-an-object"],
)
def test_bad_input_is_refused_and_changes_nothing(
    client: TestClient,
    account: Account,
    create_model: CreateModel,
    upload: Upload,
    body: Any,
    loc: list[str],
) -> None:
    create_model("guarded")
    assert upload("guarded").status_code == 201
    url = "/v1/models/guarded/versions/1/card"
    before = {"intended_use": "kept", "limitations": "kept too"}
    assert client.patch(url, json=before, headers=account.headers).status_code == 200

    problem = assert_problem(client.patch(url, json=body, headers=account.headers), 422)

    assert problem["errors"][0]["loc"] == loc
    card = _card(client, "guarded", 1, account.headers)
    assert {k: card[k] for k in before} == before


def test_bad_version_references(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("refs")
    assert upload("refs").status_code == 201
    for method in ("GET", "PATCH"):
        body = {"intended_use": "x"} if method == "PATCH" else None
        for ref, status in (("2", 404), ("nope", 404), ("Not An Alias", 422), ("0", 422)):
            answer = client.request(
                method, f"/v1/models/refs/versions/{ref}/card", json=body, headers=account.headers
            )
            assert_problem(answer, status)
    assert _card(client, "refs", 1, account.headers)["intended_use"] is None


def test_the_sdk_reads_and_sets_a_card(
    client: TestClient, account: Account, create_model: CreateModel, upload: Upload
) -> None:
    create_model("sdk-card")
    assert upload("sdk-card").status_code == 201

    def forward(request: httpx.Request) -> httpx.Response:
        answer = client.request(
            request.method, str(request.url), content=request.content, headers=request.headers
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    with Client("http://testserver", account.token, transport=httpx.MockTransport(forward)) as sdk:
        card = sdk.models.set_card("sdk-card", 1, intended_use="Tests.", limitations="None known.")
        assert isinstance(card, ModelCard)
        assert (card.intended_use, card.limitations) == ("Tests.", "None known.")
        assert sdk.models.set_card("sdk-card", "latest", limitations=None).limitations is None
        card = sdk.models.card("sdk-card")
        assert card.source == "upload"
        assert card.intended_use == "Tests."
        assert card.not_recorded == ["input.value_range", "training", "metrics"]
        assert sdk.models.card_markdown("sdk-card", 1).startswith("# sdk\\-card, version 1\n")
        with pytest.raises(AiaasError) as refused:
            sdk.models.set_card("sdk-card", 1, intended_use="x" * (CARD_TEXT_MAX + 1))
        assert refused.value.status == 422


# ---- who may read and change a card -------------------------------------------------------


@pytest.fixture
def intruder(client: TestClient) -> Account:
    return register(client)


def test_another_account_private_card_answers_as_an_unknown_model(
    client: TestClient, account: Account, intruder: Account, create_model: CreateModel
) -> None:
    name = create_model("secret")["name"]
    upload_version(client, account, name)
    assert client.patch(
        f"/v1/models/{name}/versions/1/card",
        json={"intended_use": "private words"},
        headers=account.headers,
    ).is_success

    for method, body in (("GET", None), ("PATCH", {"intended_use": "mine now"})):
        for query in ("", "?format=markdown"):
            theirs = client.request(
                method,
                f"/v1/models/{name}/versions/1/card{query}",
                json=body,
                headers={**intruder.headers, "Accept": "text/markdown"},
            )
            unknown = client.request(
                method,
                f"/v1/models/no-such-model/versions/1/card{query}",
                json=body,
                headers={**intruder.headers, "Accept": "text/markdown"},
            )
            assert_problem(theirs, 404)
            assert_problem(unknown, 404)
            assert theirs.text == unknown.text.replace("no-such-model", name)
    assert _card(client, name, 1, account.headers)["intended_use"] == "private words"


def test_a_public_card_is_read_only_to_others(
    client: TestClient,
    account: Account,
    intruder: Account,
    create_model: CreateModel,
    upload: Upload,
    make_key: Callable[..., dict[str, Any]],
) -> None:
    create_model("open", visibility="public")
    assert upload("open").status_code == 201
    url = "/v1/models/open/versions/1/card"
    assert client.patch(url, json={"intended_use": "theirs"}, headers=account.headers).is_success

    assert_problem(client.patch(url, json={"intended_use": "x"}, headers=intruder.headers), 403)
    reader = bearer(make_key(["models:read"])["key"])
    assert _card(client, "open", 1, reader)["intended_use"] == "theirs"
    refused = assert_problem(client.patch(url, json={"intended_use": "x"}, headers=reader), 403)
    assert refused["required_scope"] == "models:write"
    writer = bearer(make_key(["models:write"])["key"])
    assert_problem(client.get(url, headers=writer), 403)  # reading wants models:read
    assert client.patch(url, json={"intended_use": "by key"}, headers=writer).status_code == 200
    assert _card(client, "open", 1, intruder.headers)["intended_use"] == "by key"


# ---- the migration ------------------------------------------------------------------------

_users = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String()),
    sa.column("password_hash", sa.String()),
    sa.column("role", sa.String()),
    sa.column("webhook_secret", sa.String()),
    sa.column("created_at", aiaas.db.UTCDateTime()),
)
_models = sa.table(
    "models",
    sa.column("id", sa.Uuid()),
    sa.column("owner_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("task", sa.String()),
    sa.column("description", sa.Text()),
    sa.column("visibility", sa.String()),
    sa.column("capture_inputs", sa.Boolean()),
    sa.column("created_at", aiaas.db.UTCDateTime()),
    sa.column("updated_at", aiaas.db.UTCDateTime()),
)
_versions = sa.table(
    "model_versions",
    sa.column("id", sa.Uuid()),
    sa.column("model_id", sa.Uuid()),
    sa.column("number", sa.Integer()),
    sa.column("architecture", sa.String()),
    sa.column("config", sa.JSON()),
    sa.column("input_shape", sa.JSON()),
    sa.column("input_dtype", sa.String()),
    sa.column("parameters", sa.BigInteger()),
    sa.column("sha256", sa.String()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("metrics", sa.JSON()),
    sa.column("created_at", aiaas.db.UTCDateTime()),
)
_trainings = sa.table(
    "trainings",
    sa.column("id", sa.Uuid()),
    sa.column("owner_id", sa.Uuid()),
    sa.column("model_id", sa.Uuid()),
    sa.column("model_name", sa.String()),
    sa.column("datasets", sa.JSON()),
    sa.column("architecture", sa.String()),
    sa.column("config", sa.JSON()),
    sa.column("base_version", sa.Integer()),
    sa.column("hyperparameters", sa.JSON()),
    sa.column("status", sa.String()),
    sa.column("epoch", sa.Integer()),
    sa.column("epochs", sa.Integer()),
    sa.column("metrics", sa.JSON()),
    sa.column("version", sa.Integer()),
    sa.column("attempts", sa.Integer()),
    sa.column("created_at", aiaas.db.UTCDateTime()),
)


@pytest.fixture
def revision_0012(test_database_url: str | None, tmp_path: Path) -> Iterator[str]:
    scratch = scratch_database(test_database_url, tmp_path)
    upgrade(scratch.url, "0012")
    yield scratch.url
    scratch.drop()


def test_the_migration_backfills_trained_versions_and_downgrades(revision_0012: str) -> None:
    url = revision_0012
    now = datetime.now(UTC)
    user, model = uuid.uuid4(), uuid.uuid4()
    training, pooled = uuid.uuid4(), uuid.uuid4()
    hyperparameters = {"epochs": 5, "batch_size": 16, "learning_rate": 0.01}
    version = {
        "model_id": model,
        "architecture": "mlp",
        "config": {"input_dim": 4, "hidden": [8], "output_dim": 3},
        "input_shape": [4],
        "input_dtype": "float32",
        "parameters": 67,
        "sha256": "0" * 64,
        "size_bytes": 1000,
        "created_at": now,
    }
    run = {
        "owner_id": user,
        "model_id": model,
        "model_name": "old",
        "architecture": "mlp",
        "config": version["config"],
        "hyperparameters": hyperparameters,
        "status": "succeeded",
        "epoch": 5,
        "epochs": 5,
        "attempts": 1,
        "created_at": now,
    }
    splits = {"train": 105, "validation": 15, "test": 30}
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(_users).values(
                    id=user,
                    email="old@example.com",
                    password_hash="x",
                    role="user",
                    webhook_secret="whsec_test",
                    created_at=now,
                )
            )
            connection.execute(
                sa.insert(_models).values(
                    id=model,
                    owner_id=user,
                    name="old",
                    task="classification",
                    description="",
                    visibility="private",
                    capture_inputs=False,
                    created_at=now,
                    updated_at=now,
                )
            )
            for number in (1, 2, 3):
                metrics = None if number == 3 else {"accuracy": 0.9, "rows": splits}
                connection.execute(
                    sa.insert(_versions).values(
                        id=uuid.uuid4(), number=number, metrics=metrics, **version
                    )
                )
            connection.execute(
                sa.insert(_trainings).values(
                    id=training,
                    datasets=["builtin:iris"],
                    version=1,
                    metrics={"accuracy": 0.9, "rows": splits},
                    **run,
                )
            )
            connection.execute(
                sa.insert(_trainings).values(
                    id=pooled,
                    datasets=["builtin:iris", "builtin:wine"],
                    base_version=1,
                    version=2,
                    metrics={"accuracy": 0.9, "rows": splits},
                    **run,
                )
            )
            # A failed run made no version, whatever its row says.
            connection.execute(
                sa.insert(_trainings).values(
                    id=uuid.uuid4(),
                    datasets=["builtin:wine"],
                    version=3,
                    **{**run, "status": "failed"},
                )
            )

        upgrade(url, "0013")

        table = sa.table("model_versions", sa.column("number"), sa.column("provenance", sa.JSON()))
        with engine.connect() as connection:
            found = dict(connection.execute(sa.select(table.c.number, table.c.provenance)).all())
        assert found[1] == {
            "training_id": str(training),
            "datasets": [{"id": "builtin:iris", "name": None, "rows": 150}],
            "hyperparameters": hyperparameters,
            "base_version": None,
            "input_range": None,
        }
        # A pool's rows per dataset were never kept.
        assert found[2]["datasets"] == [
            {"id": "builtin:iris", "name": None, "rows": None},
            {"id": "builtin:wine", "name": None, "rows": None},
        ]
        assert found[2]["base_version"] == 1
        assert found[3] is None

        downgrade(url, "0012")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("model_versions")}
        assert not {"intended_use", "limitations", "provenance"} & columns
        upgrade(url, "0013")
    finally:
        engine.dispose()


def test_a_card_built_from_a_backfilled_record() -> None:
    facts = cards.CardFacts(
        model="old",
        task="classification",
        version=1,
        aliases=["b", "a"],
        architecture="mlp",
        config={"input_dim": 4, "hidden": [8], "output_dim": 3},
        parameters=67,
        labels=None,
        input_shape=[4],
        input_dtype="float32",
        metrics={"accuracy": 0.9, "confusion_matrix": [[1, 0], [0, 1]], "history": [{}]},
        provenance={
            "training_id": "t",
            "datasets": [{"id": "builtin:iris", "name": None, "rows": None}],
            "hyperparameters": {"epochs": 5},
            "base_version": None,
            "input_range": None,
        },
        created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        owned=False,
        owner_email="someone@example.com",
        intended_use=None,
        limitations=None,
    )

    card = cards.build_card(facts)

    assert card["aliases"] == ["a", "b"]
    assert card["created_by"] == {"owned": False, "email": None}
    assert card["not_recorded"] == ["input.value_range", "training.datasets.rows"]
    assert card["metrics"] == {
        "accuracy": 0.9,
        "confusion_matrix": [[1, 0], [0, 1]],
        "evaluated_on": None,
    }
    markdown = cards.render_markdown(card)
    assert "| builtin\\:iris | not recorded | not recorded |" in markdown
    assert "| 0 | 1 | 0 |" in markdown  # classes by index where the version has no labels
    assert "someone" not in markdown
    assert "on 2026-12-01 12:00 UTC, by a training" in markdown


def test_wants_markdown_ignores_broken_quality_values() -> None:
    assert not cards.wants_markdown("text/markdown;q=nan")
    assert not cards.wants_markdown("text/markdown;q=2")
    assert not cards.wants_markdown("text/markdown;q=x")
    assert cards.wants_markdown("TEXT/MARKDOWN")
    assert not cards.wants_markdown("text/markdown;q=0, text/*")
    assert not cards.wants_markdown("")
    assert cards.wants_markdown(None, "markdown")
