"""``AsyncClient``: the API from asyncio code, method for method as ``Client``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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


class AsyncClient:
    """As ``Client``, with every call a coroutine and ``trainings.events`` an async iterator."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = resolve(base_url, api_key)
        self.base_url = config.base_url
        self.api_key = config.api_key
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        headers = {"user-agent": "aiaas-python"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.AsyncClient(
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

    def with_key(self, api_key: str) -> AsyncClient:
        """Another client on the same server and settings, with this key or token."""
        return AsyncClient(self.base_url, api_key, timeout=self._timeout, retry=self.retry)

    async def run(self, call: Call[T]) -> T:
        """Send ``call`` (again, while its answer says to and the policy allows) and read it."""
        attempt = 0
        while True:
            try:
                response = await self._http.send(call.request(self._http))
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
            await asyncio.sleep(delay)
            attempt += 1

    async def pages(self, call_for: Callable[[str | None], Call[_api.Page[T]]]) -> list[T]:
        items: list[T] = []
        cursor: str | None = None
        while True:
            page = await self.run(call_for(cursor))
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class Accounts(_Resource):
    async def register(self, email: str, password: str) -> Account:
        return await self._client.run(_api.register(email, password))

    async def login(self, email: str, password: str) -> AccessToken:
        return await self._client.run(_api.login(email, password))

    async def me(self) -> Account:
        return await self._client.run(_api.me())


class Keys(_Resource):
    async def create(
        self, name: str, scopes: Sequence[str], *, expires_in_days: int | None = None
    ) -> ApiKey:
        return await self._client.run(_api.create_key(name, scopes, expires_in_days))

    async def list(self) -> list[ApiKey]:
        return await self._client.pages(_api.list_keys)

    async def revoke(self, key_id: str) -> None:
        await self._client.run(_api.revoke_key(key_id))


class Models(_Resource):
    async def architectures(self) -> list[Architecture]:
        return await self._client.run(_api.architectures())

    async def list(self) -> list[Model]:
        return await self._client.pages(_api.list_models)

    async def get(self, name: str) -> Model:
        return await self._client.run(_api.get_model(name))

    async def create(
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
        return await self._client.run(call)

    async def update(self, name: str, **changes: Any) -> Model:
        return await self._client.run(_api.update_model(name, changes))

    async def delete(self, name: str) -> None:
        await self._client.run(_api.delete_model(name))

    async def push(
        self,
        name: str,
        module_or_state_dict: weights.Weights,
        architecture: str,
        config: Mapping[str, Any],
        *,
        labels: Sequence[str] | None = None,
    ) -> Version:
        blob = weights.to_safetensors(module_or_state_dict)
        call = _api.push(name, blob, architecture=architecture, config=config, labels=labels)
        return await self._client.run(call)

    async def predict(
        self, name: str, inputs: Any, version: int | str | None = None
    ) -> PredictResult:
        return await self._client.run(_api.predict(name, inputs, version))

    async def explain(
        self,
        name: str,
        inputs: Any,
        *,
        method: str | None = None,
        target: int | str | None = None,
        version: int | str | None = None,
    ) -> ExplainResult:
        return await self._client.run(
            _api.explain(name, inputs, method=method, target=target, version=version)
        )

    async def card(self, name: str, version: int | str = "latest") -> ModelCard:
        """The version's model card: its making, held-out metrics, and its owner's text."""
        return await self._client.run(_api.card(name, version))

    async def card_markdown(self, name: str, version: int | str = "latest") -> str:
        """The card as a Markdown document, the owner's text escaped."""
        return await self._client.run(_api.card_markdown(name, version))

    async def set_card(self, name: str, version: int | str, **changes: str | None) -> ModelCard:
        """Set ``intended_use`` and/or ``limitations`` (None clears one; owner only)."""
        return await self._client.run(_api.set_card(name, version, changes))


class Versions(_Resource):
    async def list(self, model: str) -> list[Version]:
        return await self._client.pages(lambda cursor: _api.list_versions(model, cursor))

    async def get(self, model: str, version: int | str) -> Version:
        return await self._client.run(_api.get_version(model, version))


class Aliases(_Resource):
    async def set(self, model: str, alias: str, version: int | str) -> Alias:
        return await self._client.run(_api.set_alias(model, alias, version))

    async def list(self, model: str) -> list[Alias]:
        return await self._client.run(_api.list_aliases(model))

    async def delete(self, model: str, alias: str) -> None:
        await self._client.run(_api.delete_alias(model, alias))


class AsyncPredictionJob:
    """A prediction job as created; ``await wait()`` for it to finish."""

    def __init__(self, client: AsyncClient, job: Prediction) -> None:
        self._client = client
        self.job = job
        self.id = job.id

    async def refresh(self) -> Prediction:
        self.job = await self._client.predictions.get(self.id)
        return self.job

    # ``timeout`` as Client's has it: one signature for both clients.
    async def wait(self, timeout: float = 300.0, interval: float = 0.2) -> Prediction:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not self.job.done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prediction {self.id} still {self.job.status}")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 2.0)
            await self.refresh()
        return self.job


class Predictions(_Resource):
    async def create(
        self,
        model: str,
        inputs: Any,
        *,
        version: int | str | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncPredictionJob:
        call = _api.create_prediction(
            model, inputs, version=version, webhook=webhook, idempotency_key=idempotency_key
        )
        return AsyncPredictionJob(self._client, await self._client.run(call))

    async def get(self, job_id: str) -> Prediction:
        return await self._client.run(_api.get_prediction(job_id))

    async def list(self) -> list[Prediction]:
        return await self._client.pages(_api.list_predictions)

    async def cancel(self, job_id: str) -> Prediction:
        return await self._client.run(_api.cancel_prediction(job_id))

    async def feedback(self, job_id: str, label: Any) -> Prediction:
        return await self._client.run(_api.feedback(job_id, label))


class Datasets(_Resource):
    async def upload(
        self,
        file: str | Path | bytes,
        *,
        name: str,
        task: str,
        label_column: str | None = None,
        input_shape: Sequence[int] | None = None,
        filename: str | None = None,
    ) -> Dataset:
        call = _api.upload_dataset(
            file,
            name=name,
            task=task,
            label_column=label_column,
            input_shape=input_shape,
            filename=filename,
        )
        return await self._client.run(call)

    async def list(self) -> list[Dataset]:
        return await self._client.pages(_api.list_datasets)

    async def get(self, dataset_id: str) -> Dataset:
        return await self._client.run(_api.get_dataset(dataset_id))

    async def delete(self, dataset_id: str) -> None:
        await self._client.run(_api.delete_dataset(dataset_id))


class AsyncTrainingJob:
    """A training as created; follow it with ``events()`` or ``await wait()`` for it."""

    def __init__(self, client: AsyncClient, training: Training) -> None:
        self._client = client
        self.training = training
        self.id = training.id

    def events(self) -> AsyncIterator[TrainingEvent]:
        return self._client.trainings.events(self.id)

    async def wait(self, timeout: float = 3600.0) -> Training:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            async for event in self._client.trainings.events(self.id):
                if event.event == "end":
                    break
        self.training = await self._client.trainings.get(self.id)
        return self.training


class Trainings(_Resource):
    async def create(
        self,
        model: str,
        dataset: str | Sequence[str],
        *,
        architecture: str | None = None,
        config: Mapping[str, Any] | None = None,
        base_version: int | str | None = None,
        **hyperparameters: Any,
    ) -> AsyncTrainingJob:
        call = _api.create_training(
            model,
            dataset,
            architecture=architecture,
            config=config,
            base_version=base_version,
            hyperparameters=hyperparameters,
        )
        return AsyncTrainingJob(self._client, await self._client.run(call))

    async def get(self, training_id: str) -> Training:
        return await self._client.run(_api.get_training(training_id))

    async def list(self) -> list[Training]:
        return await self._client.pages(_api.list_trainings)

    async def cancel(self, training_id: str) -> Training:
        return await self._client.run(_api.cancel_training(training_id))

    async def events(self, training_id: str) -> AsyncIterator[TrainingEvent]:
        """As ``Client.trainings.events``: live, reconnecting with ``Last-Event-ID``."""
        client = self._client
        last: int | None = None
        attempt = 0
        while True:
            headers = {"last-event-id": str(last)} if last is not None else {}
            parser = EventParser()
            try:
                async with client._http.stream(
                    "GET", _api.training_events_path(training_id), headers=headers
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        checked(response)
                    async for line in response.aiter_lines():
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
                await asyncio.sleep(delay)
                attempt += 1
                continue
            attempt += 1
            delay = client.retry.delay(attempt)
            if delay is None:
                raise TransportError(f"events of training {training_id}: the stream kept ending")
            await asyncio.sleep(delay)


class UsageAPI(_Resource):
    async def get(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        granularity: str | None = None,
    ) -> Usage:
        return await self._client.run(_api.usage(start, end, granularity))
