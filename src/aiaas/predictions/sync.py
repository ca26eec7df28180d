"""The synchronous predict path: ``POST /v1/models/{name}/predict``, and the prediction
service that ``/v2/models/{name}/infer`` (``aiaas.v2``) runs through as well.

This is the platform's hot path, so it avoids per-request database work (credentials and model
resolution are cached, see ``accounts/credentials.py`` and ``predictions/directory.py``), parses
bodies with orjson/numpy rather than pydantic, and hands torch work to the dispatcher's batcher.

A request goes through four steps, each a method of :class:`PredictPath` that both protocols
share: ``caller`` (credential, scope, rate limit), ``directory.resolve`` (name and version
reference to what runs, tenancy included), the protocol's own decoding of the body to a float32
batch, and ``run`` (the batch through the dispatcher, with the metrics, usage metering, timeout
and keeping the inputs for feedback). ``serve`` strings them together around a decoder.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from prometheus_client import Counter

from aiaas.accounts.credentials import CredentialCache
from aiaas.accounts.schemas import Scope
from aiaas.config import Settings
from aiaas.dispatch.base import Dispatcher
from aiaas.errors import (
    AppError,
    GatewayTimeout,
    InvalidInput,
    PredictionFailed,
    UnsupportedMediaType,
    from_core,
)
from aiaas.logs import note_account
from aiaas.metering.meter import UsageMeter
from aiaas.metrics import Metrics
from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors import FloatBatch, decode_json_body, decode_npy, encode_npy
from aiaas.predictions.directory import ModelDirectory, ResolvedVersion
from aiaas.predictions.rollouts import RolloutStats
from aiaas.ratelimits import Decision, RateLimits, RouteClass
from aiaas.ratelimits.limiter import Bucket
from aiaas.serving.postprocess import postprocess

log = logging.getLogger(__name__)
T = TypeVar("T")

JSON = "application/json"
NPY = "application/x-npy"


@dataclass(frozen=True, slots=True)
class PredictResult:
    id: str
    resolved: ResolvedVersion
    outputs: np.ndarray
    rate_limit: Decision | None = None

    def render(self, accept: str | None) -> tuple[bytes, dict[str, str]]:
        """The answer's body and headers: .npy outputs when the client accepts them, else JSON."""
        # Which version answered: through an alias split between versions, not the same each
        # time (the .npy answer, which has no body to say so, also keeps its older name).
        version = str(self.resolved.version)
        if accept is not None and NPY in accept:
            return encode_npy(self.outputs), {
                "content-type": NPY,
                "aiaas-prediction-id": self.id,
                "aiaas-model": self.resolved.model,
                "aiaas-version": version,
                "aiaas-model-version": version,
            }
        body = orjson.dumps(
            {
                "id": self.id,
                "model": self.resolved.model,
                "version": self.resolved.version,
                "outputs": self.outputs,
                # Regression predictions are the outputs: the same array, so both serialise
                # alike (float32), rather than postprocess's Python floats.
                "predictions": (
                    self.outputs
                    if self.resolved.spec.task == "regression"
                    else postprocess(self.resolved.spec, self.outputs)
                ),
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return body, {"content-type": JSON, "aiaas-model-version": version}


@dataclass(frozen=True, slots=True)
class _Counters:
    succeeded: Counter
    failed: Counter
    timeout: Counter


def fast_uuid4() -> str:
    """A random version-4 UUID without a system call: ids of answers, not secrets.

    Formatted here rather than through ``uuid.UUID``, whose constructor and ``__str__``
    cost a twentieth of a request's time on the gateway."""
    h = f"{random.getrandbits(128) & _V4_MASK | _V4_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_V4_MASK = ~(0xF000 << 64 | 0xC000 << 48) & ((1 << 128) - 1)
_V4_BITS = 0x4000 << 64 | 0x8000 << 48


# (prediction id, caller, version, inputs, outputs): keep a sync prediction for feedback.
Recorder = Callable[[str, uuid.UUID, ResolvedVersion, np.ndarray, np.ndarray], None]

# The body of one request, decoded for the version it resolved to; raises an AppError.
Decoder = Callable[[ResolvedVersion], FloatBatch]

_PREDICT_SCOPE: tuple[str, ...] = (Scope.PREDICT,)


@dataclass
class PredictPath:
    """The synchronous prediction service of ``/v1`` predict and ``/v2`` infer alike, built
    once in ``create_app``."""

    settings: Settings
    credentials: CredentialCache
    directory: ModelDirectory
    dispatcher: Dispatcher
    metrics: Metrics
    # Called, off the event loop, for models with ``capture_inputs`` on.
    record: Recorder | None = None
    limits: RateLimits | None = None
    meter: UsageMeter | None = None
    rollouts: RolloutStats = field(default_factory=RolloutStats)
    _children: dict[tuple[str, int], _Counters] = field(default_factory=dict)
    # Shadow runs in flight, held so they are not collected mid-run; bounded by
    # AIAAS_SHADOW_MAX_IN_FLIGHT (past it, copies are dropped and counted).
    _shadows: set[asyncio.Task[None]] = field(default_factory=set)
    _buckets: dict[tuple[int, RouteClass], tuple[object, list[Bucket]]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        self._in_flight = self.metrics.jobs_in_flight
        self._total_latency = self.metrics.prediction_latency.labels("total")

    async def caller(
        self,
        authorization: str | None,
        *,
        scopes: tuple[str, ...] = _PREDICT_SCOPE,
        route_class: RouteClass = RouteClass.PREDICT,
    ) -> tuple[uuid.UUID, Decision | None]:
        """Who calls (holding one of ``scopes``), after taking one request from their
        buckets of ``route_class``."""
        caller = await self.credentials.caller(_bearer(authorization))
        note_account(caller.user_id)
        caller.require(*scopes)
        limits = self.limits
        if limits is None:
            return caller.user_id, None
        # The bucket names and rates of a credential change only with its account's
        # overrides: built once per cached credential (a refreshed credential is a new
        # Caller object) and route class, not per request. The entry holds the Caller, so
        # its id is not reused while the entry lives.
        key = (id(caller), route_class)
        known = self._buckets.get(key)
        if known is None or known[0] is not caller:
            if len(self._buckets) >= 100_000:
                self._buckets.clear()
            buckets = limits.account_buckets(
                route_class,
                account_id=caller.user_id,
                api_key_id=caller.api_key_id,
                overrides=caller.rate_overrides,
            )
            known = self._buckets[key] = (caller, buckets)
        if limits.local:
            return caller.user_id, limits.check(known[1])
        return caller.user_id, await limits.acheck(known[1])

    def decode(
        self, body: bytes, content_type: str | None, resolved: ResolvedVersion
    ) -> FloatBatch:
        """A /v1 body (JSON or ``.npy``) as the batch for ``resolved``."""
        batch, extra = self.decode_body(body, content_type, resolved)
        if extra:
            raise InvalidInput(
                f"Unknown field(s): {', '.join(sorted(extra))}.",
                errors=[{"loc": ["body", k], "msg": "extra field"} for k in sorted(extra)],
            )
        return batch

    def decode_body(
        self, body: bytes, content_type: str | None, resolved: ResolvedVersion
    ) -> tuple[FloatBatch, dict[str, Any]]:
        """A /v1 body as the batch for ``resolved``, and a JSON body's fields besides
        ``inputs`` (none for ``.npy``), for routes that take options with their inputs."""
        media = (content_type or JSON).split(";", 1)[0].strip().lower()
        shape = resolved.spec.input_shape
        limit = self.settings.max_batch_rows
        try:
            if media == JSON or media.endswith("+json"):
                return decode_json_body(body, shape=shape, max_rows=limit)
            if media == NPY:
                return decode_npy(body, shape=shape, max_rows=limit), {}
        except InputInvalid as exc:
            raise from_core(exc) from None
        raise UnsupportedMediaType(f"Send {JSON} or {NPY}, not {media}.", accepted=[JSON, NPY])

    def predict(
        self,
        *,
        name: str,
        ref: str | None,
        authorization: str | None,
        content_type: str | None,
        body: bytes,
        routing_key: str | None = None,
    ) -> Awaitable[PredictResult]:
        """``POST /v1/models/{name}/predict``: a JSON or ``.npy`` body."""
        decode = functools.partial(self.decode, body, content_type)
        return self.serve(
            name=name, ref=ref, authorization=authorization, decode=decode, routing_key=routing_key
        )

    async def serve(
        self,
        *,
        name: str,
        ref: str | None,
        authorization: str | None,
        decode: Decoder,
        routing_key: str | None = None,
    ) -> PredictResult:
        """One synchronous prediction of the version ``ref`` of ``name``, whatever the body's
        protocol: ``decode`` turns the body into the batch for the version it resolved to.
        ``routing_key`` (the ``Aiaas-Routing-Key`` header) keeps a caller on one version of an
        alias that splits its traffic."""
        start = time.perf_counter()
        user_id, rate_limit = await self.caller(authorization)
        return await self.serve_as(
            user_id,
            name=name,
            ref=ref,
            decode=decode,
            rate_limit=rate_limit,
            start=start,
            routing_key=routing_key,
        )

    async def serve_as(
        self,
        user_id: uuid.UUID,
        *,
        name: str,
        ref: str | None,
        decode: Decoder,
        rate_limit: Decision | None = None,
        start: float | None = None,
        routing_key: str | None = None,
    ) -> PredictResult:
        """``serve`` for a caller already known: the dashboard's playground, whose browser
        session stands for the account (and carries no API key to check)."""
        start = time.perf_counter() if start is None else start
        resolved, batch = await self.admit(
            user_id, name=name, ref=ref, decode=decode, routing_key=routing_key
        )
        ident, outputs = await self.run(user_id, resolved, batch)
        self._total_latency.observe(time.perf_counter() - start)
        return PredictResult(ident, resolved, outputs, rate_limit)

    async def admit(
        self,
        user_id: uuid.UUID,
        *,
        name: str,
        ref: str | None,
        decode: Callable[[ResolvedVersion], T],
        routing_key: str | None = None,
    ) -> tuple[ResolvedVersion, T]:
        """The version ``ref`` of ``name`` resolves to for this caller, and the body as
        ``decode`` reads it for that version (a refused body counts in the caller's usage):
        what every route that runs a model asks after who calls."""
        resolved = await self.directory.resolve(name, ref, user_id, routing_key)
        try:
            decoded = decode(resolved)
        except AppError:
            self.refused(user_id, resolved)
            raise
        return resolved, decoded

    def refused(self, user_id: uuid.UUID, resolved: ResolvedVersion) -> None:
        """Count a request whose input was refused: an error with no rows in the usage."""
        if self.meter is not None:
            self.meter.record(user_id, resolved.model_id, rows=0, compute_s=0.0, error=True)

    async def run(
        self, user_id: uuid.UUID, resolved: ResolvedVersion, batch: FloatBatch
    ) -> tuple[str, np.ndarray]:
        """The batch through the dispatcher's batcher: the prediction's id and its outputs.

        Counts the outcome in the metrics and the caller's usage, turns a timeout into 504 and
        a failing model into 500, and keeps inputs and outputs for feedback when the model
        captures them."""
        meter = self.meter
        counters = self._counters(resolved)
        self._in_flight.inc()
        forward = time.perf_counter()
        failed = True
        try:
            # The dispatcher's batcher fails the request at the predict timeout.
            outputs = await self.dispatcher.predict(resolved.spec, batch)
            failed = False
        except TimeoutError:
            counters.timeout.inc()
            raise GatewayTimeout(
                f"No worker answered within {self.settings.predict_timeout_s:g}s."
            ) from None
        except AppError:
            counters.failed.inc()
            raise
        except Exception as exc:
            counters.failed.inc()
            raise PredictionFailed(
                f"The model failed on this input: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._in_flight.dec()
            took = time.perf_counter() - forward
            if meter is not None:
                meter.record(
                    user_id, resolved.model_id, rows=len(batch), compute_s=took, error=failed
                )
            if resolved.rollout is not None:
                self.rollouts.served(resolved, took, failed=failed)
        counters.succeeded.inc()
        if resolved.shadow is not None:
            self._start_shadow(resolved, resolved.shadow, batch, outputs)
        ident = fast_uuid4()
        if resolved.capture_inputs and self.record is not None:
            try:
                await asyncio.to_thread(self.record, ident, user_id, resolved, batch, outputs)
            except Exception:
                # The prediction itself succeeded: answer it; only feedback on it is lost.
                log.exception("could not keep prediction %s for feedback", ident)
        return ident, outputs

    def _start_shadow(
        self,
        primary: ResolvedVersion,
        shadow: ResolvedVersion,
        batch: FloatBatch,
        outputs: np.ndarray,
    ) -> None:
        """Run a copy on the alias's shadow version once the caller's answer is made: a task of
        its own, so nothing it does (waiting, failing) reaches the caller."""
        shadows = self.metrics.shadow_predictions
        if len(self._shadows) >= self.settings.shadow_max_in_flight:
            shadows.labels(shadow.model, str(shadow.version), "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(primary, shadow, batch, outputs))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def drop_shadows(self) -> None:
        """At shutdown, before the dispatcher closes: copies still running are dropped, not
        left to fail against a closed dispatcher and be counted as the shadow's failures."""
        for task in list(self._shadows):
            task.cancel()
        await asyncio.gather(*self._shadows, return_exceptions=True)

    async def _shadow(
        self,
        primary: ResolvedVersion,
        shadow: ResolvedVersion,
        batch: FloatBatch,
        outputs: np.ndarray,
    ) -> None:
        labels = (shadow.model, str(shadow.version))
        start = time.perf_counter()
        try:
            theirs = await self.dispatcher.predict(shadow.spec, batch)
        except Exception as exc:  # counted, never raised: the caller has its answer
            log.info("shadow v%d of %s failed: %s", shadow.version, shadow.model, exc)
            self.metrics.shadow_predictions.labels(*labels, "failed").inc()
            self.rollouts.shadowed(primary, shadow, 0.0, ours=outputs, theirs=None)
            return
        took = time.perf_counter() - start
        self.metrics.shadow_predictions.labels(*labels, "succeeded").inc()
        compared, agreeing = self.rollouts.shadowed(
            primary, shadow, took, ours=outputs, theirs=theirs
        )
        if primary.task == "classification":
            self.metrics.shadow_rows.labels(*labels, "agree").inc(agreeing)
            self.metrics.shadow_rows.labels(*labels, "disagree").inc(compared - agreeing)

    def _counters(self, resolved: ResolvedVersion) -> _Counters:
        # Looking labelled children up in prometheus_client takes a lock and a dict build per
        # call; the hot path keeps its own.
        key = (resolved.model, resolved.version)
        found = self._children.get(key)
        if found is None:
            family = self.metrics.predictions
            model, version = resolved.model, str(resolved.version)
            found = _Counters(
                succeeded=family.labels(model, version, "succeeded"),
                failed=family.labels(model, version, "failed"),
                timeout=family.labels(model, version, "timeout"),
            )
            self._children[key] = found
        return found


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()
