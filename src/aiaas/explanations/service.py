"""Explanations of a model version's answers: ``POST /v1/models/{name}/explain``.

An explanation is asked exactly as a prediction is: the same ``PredictPath`` says who calls
(a credential with the ``predict`` scope, one request from the predict rate limit), which
version the name and reference resolve to (another account's private model is a 404, as an
unknown name), and decodes the body within the predict limits (rows, sequence length, body
size, finite numbers). Then the options are read and checked against that version, and the
rows go to the dispatcher's ``explain`` in one call, under the predict timeout.

Explanations are not batched with other requests: each has its own method and target, and
one request's integration steps already make a batch of their own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from aiaas.errors import AppError, GatewayTimeout, InvalidInput, PredictionFailed, invalid
from aiaas.explanations.schemas import ExplainParams
from aiaas.ml.explain import ExplainOptions, Explanation, evaluations
from aiaas.ml.tensors import FloatBatch, encode_npy
from aiaas.predictions.directory import ResolvedVersion
from aiaas.predictions.sync import JSON, NPY, PredictPath
from aiaas.ratelimits import Decision
from aiaas.serving.postprocess import postprocess
from aiaas.serving.spec import ServingSpec

_OPTIONS = frozenset(ExplainParams.model_fields)


@dataclass(frozen=True, slots=True)
class ExplainResult:
    resolved: ResolvedVersion
    method: str
    explanation: Explanation
    rate_limit: Decision | None

    def render(self, accept: str | None) -> tuple[bytes, dict[str, str]]:
        """The answer's body and headers: the attributions as .npy when the client accepts
        that (the rest in headers), else the whole answer as JSON."""
        spec, found = self.resolved.spec, self.explanation
        if accept is not None and NPY in accept:
            return encode_npy(found.attributions), {
                "content-type": NPY,
                "aiaas-model": self.resolved.model,
                "aiaas-version": str(self.resolved.version),
                "aiaas-method": self.method,
                # Indices, not label names: a header holds neither commas nor any character.
                "aiaas-target": ",".join(map(str, found.targets.tolist())),
            }
        targets: list[int] = found.targets.tolist()
        labels = spec.labels if spec.task == "classification" else None
        body = orjson.dumps(
            {
                "model": self.resolved.model,
                "version": self.resolved.version,
                "method": self.method,
                "attributions": found.attributions,
                "target": [labels[t] for t in targets] if labels is not None else targets,
                "predictions": (
                    found.outputs if spec.task == "regression" else postprocess(spec, found.outputs)
                ),
                "outputs": found.outputs,
                "completeness_gap": found.completeness_gap,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return body, {"content-type": JSON}


class Explainer:
    """Built once in ``create_app``, over the app's ``PredictPath``."""

    def __init__(self, path: PredictPath) -> None:
        self.path = path

    async def explain(
        self,
        *,
        name: str,
        ref: str | None,
        authorization: str | None,
        content_type: str | None,
        body: bytes,
        query: Mapping[str, str],
        routing_key: str | None = None,
    ) -> ExplainResult:
        """Explain the body's rows with the version ``ref`` of ``name``; options come from a
        JSON body's fields, or from ``query`` (a body field wins over a query parameter).
        ``routing_key`` picks the version of a split alias as it does for predict."""
        user_id, rate_limit = await self.path.caller(authorization)
        return await self.explain_as(
            user_id,
            name=name,
            ref=ref,
            content_type=content_type,
            body=body,
            query=query,
            rate_limit=rate_limit,
            routing_key=routing_key,
        )

    async def explain_as(
        self,
        user_id: uuid.UUID,
        *,
        name: str,
        ref: str | None,
        content_type: str | None,
        body: bytes,
        query: Mapping[str, str],
        rate_limit: Decision | None = None,
        routing_key: str | None = None,
    ) -> ExplainResult:
        """``explain`` for a caller already known: the dashboard's playground, as
        ``PredictPath.serve_as`` is for predictions."""

        limit = self.path.settings.explain_max_evaluations

        def decode(resolved: ResolvedVersion) -> tuple[FloatBatch, ExplainOptions]:
            batch, fields = self.path.decode_body(body, content_type, resolved)
            options = read_options(resolved, fields, query)
            cost = evaluations(options, len(batch), tuple(batch.shape[1:]))
            if cost > limit:
                raise InvalidInput(
                    f"This explanation would run {cost:,} examples through the model; the "
                    f"limit is {limit:,}: send fewer rows"
                    + (" or fewer steps." if options.method == "integrated_gradients" else "."),
                    errors=[{"loc": ["body", "inputs"], "msg": f"over {limit:,} evaluations"}],
                )
            return batch, options

        resolved, (batch, options) = await self.path.admit(
            user_id, name=name, ref=ref, decode=decode, routing_key=routing_key
        )
        explanation = await self._run(user_id, resolved, batch, options)
        return ExplainResult(resolved, options.method, explanation, rate_limit)

    async def _run(
        self,
        user_id: uuid.UUID,
        resolved: ResolvedVersion,
        batch: FloatBatch,
        options: ExplainOptions,
    ) -> Explanation:
        """The rows through the dispatcher; counted in the caller's usage as predictions are,
        a timeout a 504 and a failing model a 500."""
        path = self.path
        start = time.perf_counter()
        failed = True
        try:
            explanation = await path.dispatcher.explain(resolved.spec, batch, options)
            failed = False
        except TimeoutError:
            timeout = path.settings.predict_timeout_s
            raise GatewayTimeout(f"No worker answered within {timeout:g}s.") from None
        except AppError:
            raise
        except Exception as exc:
            raise PredictionFailed(
                f"The model could not be explained on this input: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if path.meter is not None:
                took = time.perf_counter() - start
                path.meter.record(
                    user_id, resolved.model_id, rows=len(batch), compute_s=took, error=failed
                )
        return explanation


def read_options(
    resolved: ResolvedVersion, fields: Mapping[str, Any], query: Mapping[str, str]
) -> ExplainOptions:
    """The options of a request, checked against the version it explains; 422 naming the
    field (``["body", name]`` or ``["query", name]``) otherwise."""
    source = {name: "query" for name in query if name in _OPTIONS}
    source.update(dict.fromkeys(fields, "body"))
    raw = {name: query[name] for name in query if name in _OPTIONS} | dict(fields)
    try:
        params = ExplainParams.model_validate(raw)
    except ValidationError as exc:
        # One problem per field: a union (``target``) fails once per type it could have been.
        problems: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            problems.setdefault(str(error["loc"][0]), []).append(error["msg"])
        errors = [
            {"loc": [source.get(name, "body"), name], "msg": "; ".join(msgs)}
            for name, msgs in problems.items()
        ]
        raise InvalidInput("The explain options are invalid.", errors=errors) from None
    spec = resolved.spec
    if params.method == "occlusion" and spec.architecture != "cnn":
        raise invalid(
            f"occlusion explains images: '{resolved.model}' is an {spec.architecture}; use "
            "integrated_gradients or saliency",
            source["method"],
            "method",
        )
    if params.baseline == "mean":
        # Training folds the input standardization into the weights and keeps no statistics
        # of the data with the version, so there is no mean to start from.
        raise invalid(
            f"version {resolved.version} of '{resolved.model}' records no training mean; "
            "use the 'zeros' baseline",
            source["baseline"],
            "baseline",
        )
    target = None
    if params.target is not None:
        target = _target_index(spec, params.target, source["target"])
    return ExplainOptions(method=params.method, target=target, steps=params.steps)


def _target_index(spec: ServingSpec, target: int | str, where: str) -> int:
    labels = spec.labels or ()
    if isinstance(target, str):
        if target in labels:
            return labels.index(target)
        if not (target.isascii() and target.isdigit()):
            named = f"one of {', '.join(labels)}" if labels else "a class index"
            raise invalid(f"no class named '{target}': expected {named}", where, "target")
        target = int(target)
    # Every architecture names its number of outputs so.
    count = spec.config.get("output_dim")
    if target < 0 or (isinstance(count, int) and target >= count):
        raise invalid(
            f"target {target} is not an output of this model (0 to {count - 1 if count else 0})",
            where,
            "target",
        )
    return target
