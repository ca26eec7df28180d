"""``Client``: the API from synchronous code. Each method runs one call of ``_api``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from aiaas.client import _api, weights
from aiaas.client._http import (
    Call,
    EventParser,
    RetryPolicy,
    checked,
    error_for,
    retry_delay,
)
from aiaas.client.config import resolve
from aiaas.client.errors import TransportError
from aiaas.client.types import (
    AccessToken,
    Account,
    Alias,
    ApiKey,
    Architecture,
    Dataset,
    ExplainResult,
    Model,
    ModelCard,
    Prediction,
    PredictResult,
    Training,
    TrainingEvent,
    Usage,
    Version,
)

T = TypeVar("T")


class Client:
    """``Client(base_url=..., api_key=...)``; either left out comes from ``AIAAS_BASE_URL`` /
    ``AIAAS_API_KEY``, then from the CLI's config file. ``api_key`` may also be a login token.

    Calls that may be sent twice without doing their work twice are tried again on a
    connection error, 429 or 503, after ``retry``'s back-off or the server's ``Retry-After``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = resolve(base_url, api_key)
        self.base_url = config.base_url
        self.api_key = config.api_key
        self.retry = retry or RetryPolicy()
        headers = {"user-agent": "aiaas-python"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.Client(
            base_url=config.base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.accounts = Accounts(self)
        self.keys = Keys(self)
        self.models = Models(self)
        self.versions = Versions(self)
        self.aliases = Aliases(self)
        self.predictions = Predictions(self)
        self.datasets = Datasets(self)
        self.trainings = Trainings(self)
        self.usage = UsageAPI(self)

    def with_key(self, api_key: str) -> Client:
        """Another client on the same server and settings, with this key or token."""
        return Client(self.base_url, api_key, timeout=self._timeout, retry=self.retry)

    @property
    def _timeout(self) -> float:
        read = self._http.timeout.read
        return read if read is not None else 60.0

    def run(self, call: Call[T]) -> T:
        """Send ``call`` (again, while its answer says to and the policy allows) and read it."""
        attempt = 0
        while True:
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                delay = retry_delay(self.retry, call, attempt)
                if delay is None:
                    raise TransportError(f"{call.method} {call.path}: {exc}") from exc
            else:
                if response.status_code < 400:
                    return call.parse(response)
                delay = retry_delay(self.retry, call, attempt, response)
                if delay is None:
                    raise error_for(response)
            time.sleep(delay)
            attempt += 1

    def pages(self, call_for: Callable[[str | None], Call[_api.Page[T]]]) -> list[T]:
        items: list[T] = []
        cursor: str | None = None
        while True:
            page = self.run(call_for(cursor))
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client


class Accounts(_Resource):
    def register(self, email: str, password: str) -> Account:
        return self._client.run(_api.register(email, password))

    def login(self, email: str, password: str) -> AccessToken:
        return self._client.run(_api.login(email, password))

    def me(self) -> Account:
        return self._client.run(_api.me())


class Keys(_Resource):
    def create(
        self, name: str, scopes: Sequence[str], *, expires_in_days: int | None = None
    ) -> ApiKey:
        """A new key; its secret is in ``.key``, shown this once."""
        return self._client.run(_api.create_key(name, scopes, expires_in_days))

    def list(self) -> list[ApiKey]:
        return self._client.pages(_api.list_keys)

    def revoke(self, key_id: str) -> None:
        self._client.run(_api.revoke_key(key_id))


class Models(_Resource):
    def architectures(self) -> list[Architecture]:
        return self._client.run(_api.architectures())

    def list(self) -> list[Model]:
        return self._client.pages(_api.list_models)

    def get(self, name: str) -> Model:
        return self._client.run(_api.get_model(name))

    def create(
        self,
        name: str,
        task: str,
        *,
        labels: Sequence[str] | None = None,
        description: str = "",
        visibility: str = "private",
    ) -> Model:
        call = _api.create_model(
            name, task, labels=labels, description=description, visibility=visibility
        )
        return self._client.run(call)

    def update(self, name: str, **changes: Any) -> Model:
        return self._client.run(_api.update_model(name, changes))

    def delete(self, name: str) -> None:
        self._client.run(_api.delete_model(name))

    def push(
        self,
        name: str,
        module_or_state_dict: weights.Weights,
        architecture: str,
        config: Mapping[str, Any],
        *,
        labels: Sequence[str] | None = None,
    ) -> Version:
        """Upload a new version: a torch module, a state dict (torch or numpy), safetensors
        bytes or a ``.safetensors`` path."""
        blob = weights.to_safetensors(module_or_state_dict)
        call = _api.push(name, blob, architecture=architecture, config=config, labels=labels)
        return self._client.run(call)

    def predict(self, name: str, inputs: Any, version: int | str | None = None) -> PredictResult:
        """Run the model now. ``inputs``: a numpy array (sent as .npy) or nested lists."""
        return self._client.run(_api.predict(name, inputs, version))

    def explain(
        self,
        name: str,
        inputs: Any,
        *,
        method: str | None = None,
        target: int | str | None = None,
        version: int | str | None = None,
    ) -> ExplainResult:
        """Feature attributions of the model's answers (``integrated_gradients`` by default,
        ``saliency``, ``occlusion`` for CNNs), for ``target`` or the predicted class."""
        return self._client.run(
            _api.explain(name, inputs, method=method, target=target, version=version)
        )

    def card(self, name: str, version: int | str = "latest") -> ModelCard:
        """The version's model card: its making, held-out metrics, and its owner's text."""
        return self._client.run(_api.card(name, version))

    def card_markdown(self, name: str, version: int | str = "latest") -> str:
        """The card as a Markdown document, the owner's text escaped."""
        return self._client.run(_api.card_markdown(name, version))

    def set_card(self, name: str, version: int | str, **changes: str | None) -> ModelCard:
        """Set ``intended_use`` and/or ``limitations`` (None clears one; owner only)."""
        return self._client.run(_api.set_card(name, version, changes))


class Versions(_Resource):
    def list(self, model: str) -> list[Version]:
        return self._client.pages(lambda cursor: _api.list_versions(model, cursor))

    def get(self, model: str, version: int | str) -> Version:
        return self._client.run(_api.get_version(model, version))


class Aliases(_Resource):
    def set(self, model: str, alias: str, version: int | str) -> Alias:
        return self._client.run(_api.set_alias(model, alias, version))

    def list(self, model: str) -> list[Alias]:
        return self._client.run(_api.list_aliases(model))

    def delete(self, model: str, alias: str) -> None:
        self._client.run(_api.delete_alias(model, alias))


class PredictionJob:
    """A prediction job as created; ``wait()`` for it to finish."""

    def __init__(self, client: Client, job: Prediction) -> None:
        self._client = client
        self.job = job
        self.id = job.id

    def refresh(self) -> Prediction:
        self.job = self._client.predictions.get(self.id)
        return self.job

    def wait(self, timeout: float = 300.0, interval: float = 0.2) -> Prediction:
        """The finished job (succeeded, failed or canceled); TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.job.done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prediction {self.id} still {self.job.status}")
            time.sleep(interval)
            interval = min(interval * 1.5, 2.0)
            self.refresh()
        return self.job


class Predictions(_Resource):
    def create(
        self,
        model: str,
        inputs: Any,
        *,
        version: int | str | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
    ) -> PredictionJob:
        """Queue a job. It carries an ``Idempotency-Key`` (a new one unless given), so a retry
        after a lost answer finds the job the first try made."""
        call = _api.create_prediction(
            model, inputs, version=version, webhook=webhook, idempotency_key=idempotency_key
        )
        return PredictionJob(self._client, self._client.run(call))

    def get(self, job_id: str) -> Prediction:
        return self._client.run(_api.get_prediction(job_id))

    def list(self) -> list[Prediction]:
        return self._client.pages(_api.list_predictions)

    def cancel(self, job_id: str) -> Prediction:
        return self._client.run(_api.cancel_prediction(job_id))

    def feedback(self, job_id: str, label: Any) -> Prediction:
        """The true label(s) of a prediction's inputs (sync predictions' ``id`` too, for
        models that keep their inputs)."""
        return self._client.run(_api.feedback(job_id, label))


class Datasets(_Resource):
    def upload(
        self,
        file: str | Path | bytes,
        *,
        name: str,
        task: str,
        label_column: str | None = None,
        input_shape: Sequence[int] | None = None,
        filename: str | None = None,
    ) -> Dataset:
        """A CSV or NPZ file (a path, or its bytes with ``filename`` naming the kind)."""
        call = _api.upload_dataset(
            file,
            name=name,
            task=task,
            label_column=label_column,
            input_shape=input_shape,
            filename=filename,
        )
        return self._client.run(call)

    def list(self) -> list[Dataset]:
        return self._client.pages(_api.list_datasets)

    def get(self, dataset_id: str) -> Dataset:
        return self._client.run(_api.get_dataset(dataset_id))

    def delete(self, dataset_id: str) -> None:
        self._client.run(_api.delete_dataset(dataset_id))


class TrainingJob:
    """A training as created; follow it with ``events()`` or ``wait()`` for it."""

    def __init__(self, client: Client, training: Training) -> None:
        self._client = client
        self.training = training
        self.id = training.id

    def events(self) -> Iterator[TrainingEvent]:
        return self._client.trainings.events(self.id)

    def wait(self, timeout: float = 3600.0) -> Training:
        deadline = time.monotonic() + timeout
        for event in self._client.trainings.events(self.id, _deadline=deadline):
            if event.event == "end":
                break
        self.training = self._client.trainings.get(self.id)
        return self.training


class Trainings(_Resource):
    def create(
        self,
        model: str,
        dataset: str | Sequence[str],
        *,
        architecture: str | None = None,
        config: Mapping[str, Any] | None = None,
        base_version: int | str | None = None,
        **hyperparameters: Any,
    ) -> TrainingJob:
        """Train a new version from scratch (``architecture``, ``config``) or fine-tune
        ``base_version``; ``hyperparameters`` as the API names them (epochs, batch_size...)."""
        call = _api.create_training(
            model,
            dataset,
            architecture=architecture,
            config=config,
            base_version=base_version,
            hyperparameters=hyperparameters,
        )
        return TrainingJob(self._client, self._client.run(call))

    def get(self, training_id: str) -> Training:
        return self._client.run(_api.get_training(training_id))

    def list(self) -> list[Training]:
        return self._client.pages(_api.list_trainings)

    def cancel(self, training_id: str) -> Training:
        return self._client.run(_api.cancel_training(training_id))

    def events(
        self, training_id: str, *, _deadline: float | None = None
    ) -> Iterator[TrainingEvent]:
        """The training's events, live, ending after ``end``. A dropped stream is opened
        again with ``Last-Event-ID``, so no event is missed or seen twice."""
        client = self._client
        last: int | None = None
        attempt = 0
        while True:
            headers = {"last-event-id": str(last)} if last is not None else {}
            parser = EventParser()
            try:
                with client._http.stream(
                    "GET", _api.training_events_path(training_id), headers=headers
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        checked(response)
                    for line in response.iter_lines():
                        # Checked per line, keep-alive comments included: a queued training
                        # sends no event for a long while, and wait() must still time out.
                        if _deadline is not None and time.monotonic() > _deadline:
                            raise TimeoutError(f"training {training_id} not finished")
                        event = parser.line(line)
                        if event is None:
                            continue
                        attempt = 0
                        last = event.id
                        yield event
                        if event.event == "end":
                            return
            except httpx.TransportError as exc:
                delay = client.retry.delay(attempt)
                if delay is None:
                    raise TransportError(f"events of training {training_id}: {exc}") from exc
                time.sleep(delay)
                attempt += 1
                continue
            # The stream ended without an end event (a proxy closed it): open it again.
            attempt += 1
            delay = client.retry.delay(attempt)
            if delay is None:
                raise TransportError(f"events of training {training_id}: the stream kept ending")
            time.sleep(delay)


class UsageAPI(_Resource):
    def get(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        granularity: str | None = None,
    ) -> Usage:
        """Requests, rows and compute seconds per model and per day (or hour), trainings and
        stored bytes, between ``start`` and ``end`` (the server's default: the last 30 days)."""
        return self._client.run(_api.usage(start, end, granularity))
