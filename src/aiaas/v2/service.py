"""The Open Inference Protocol over the platform's prediction service.

Inference runs through the very ``PredictPath`` that serves ``/v1`` predict (credential and
``predict`` scope, rate limit, model resolution and tenancy, the batcher, metrics, usage,
timeouts, keeping inputs for feedback): only the body's decoding and the answer's shape are
the protocol's own. Metadata and readiness ask the same path who calls and which version a
name and reference resolve to, with the ``predict`` or ``models:read`` scope.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from aiaas import __version__
from aiaas.accounts.schemas import Scope
from aiaas.config import Settings
from aiaas.db import Database
from aiaas.errors import ServiceUnavailable
from aiaas.ml.tensors import FloatBatch
from aiaas.operations.service import Readiness, not_ready
from aiaas.predictions.directory import ResolvedVersion
from aiaas.predictions.sync import PredictPath
from aiaas.ratelimits import Decision, RouteClass
from aiaas.registry import versions
from aiaas.v2 import signature
from aiaas.v2.tensors import InferRequest, Tensor, decode_input, encode_response, parse_request

SERVER_NAME: Final = "aiaas"
EXTENSIONS: Final = ("binary_tensor_data",)
PLATFORM: Final = "pytorch"
_METADATA_SCOPES: Final = (Scope.PREDICT, Scope.MODELS_READ)


@dataclass(slots=True)
class Answer:
    """An answer's body; ``header_length`` is the length of its JSON when binary outputs
    follow it, else None."""

    body: bytes
    header_length: int | None
    rate_limit: Decision | None


class OpenInference:
    """The protocol's operations, built once in ``create_app`` over its ``PredictPath``."""

    def __init__(
        self, *, path: PredictPath, database: Database, settings: Settings, readiness: Readiness
    ) -> None:
        self.path = path
        self.database = database
        self.settings = settings
        self.readiness = readiness

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    async def check_ready(self) -> None:
        """Raise 503 unless every dependency answers, as ``/readyz`` checks them."""
        problem = not_ready(await asyncio.to_thread(self.readiness.results))
        if problem is not None:
            raise ServiceUnavailable(problem)

    async def model(
        self, *, name: str, ref: str | None, authorization: str | None
    ) -> tuple[ResolvedVersion, Decision | None]:
        """The version that ``ref`` (a number or an alias; None: the default) of ``name``
        names for this caller; 404 for another account's private model, as for none."""
        user_id, decision = await self.path.caller(
            authorization, scopes=_METADATA_SCOPES, route_class=RouteClass.REGISTRY
        )
        return await self.path.directory.resolve(name, ref, user_id), decision

    async def model_metadata(
        self, *, name: str, ref: str | None, authorization: str | None
    ) -> tuple[dict[str, Any], Decision | None]:
        resolved, decision = await self.model(name=name, ref=ref, authorization=authorization)
        numbers = await asyncio.to_thread(self._version_numbers, resolved)
        spec = resolved.spec
        metadata = {
            "name": resolved.model,
            "versions": [str(number) for number in numbers],
            "platform": PLATFORM,
            "inputs": [signature.input_metadata(spec)],
            "outputs": signature.output_metadata(spec),
        }
        return metadata, decision

    def _version_numbers(self, resolved: ResolvedVersion) -> list[int]:
        with self.database.session() as session:
            return versions.version_numbers(session, model_id=resolved.model_id)

    async def infer(
        self,
        *,
        name: str,
        ref: str | None,
        authorization: str | None,
        body: bytes,
        header_length: bytes | None,
        content_encoding: bytes | None,
        routing_key: str | None = None,
    ) -> Answer:
        """``header_length`` and ``content_encoding``: the request's headers of those names,
        as sent (checked with the body, once the caller and the version are known)."""
        call = _Call(body, header_length, content_encoding, self.settings.max_batch_rows)
        result = await self.path.serve(
            name=name,
            ref=ref,
            authorization=authorization,
            decode=call.decode,
            routing_key=routing_key,
        )
        request = call.request
        assert request is not None  # decode ran, or serve raised
        resolved = result.resolved
        spec = resolved.spec
        computed = result.outputs
        outputs: list[tuple[Tensor, bool]] = []
        if request.outputs is None:
            for output in signature.output_names(spec):
                tensor = signature.output_tensor(spec, output, computed)
                outputs.append((tensor, request.binary_output))
        else:
            for asked in request.outputs:
                tensor = signature.output_tensor(spec, asked.name, computed)
                outputs.append((tensor, request.wants_binary(asked)))
        # A prediction kept for feedback needs its id; the answer's own `id` is the client's.
        parameters = {"prediction_id": result.id} if resolved.capture_inputs else None
        payload, json_length = encode_response(
            model_name=resolved.model,
            model_version=str(resolved.version),
            request_id=request.id,
            outputs=outputs,
            parameters=parameters,
        )
        return Answer(payload, json_length, result.rate_limit)


class _Call:
    """One inference request's decoding, run by ``PredictPath.serve`` once the caller and the
    version are known (so a refused body counts in the caller's usage as ``/v1``'s do); it
    keeps the parsed request for the answer."""

    __slots__ = ("body", "content_encoding", "header_length", "max_rows", "request")

    def __init__(
        self,
        body: bytes,
        header_length: bytes | None,
        content_encoding: bytes | None,
        max_rows: int,
    ) -> None:
        self.body = body
        self.header_length = header_length
        self.content_encoding = content_encoding
        self.max_rows = max_rows
        self.request: InferRequest | None = None

    def decode(self, resolved: ResolvedVersion) -> FloatBatch:
        request = parse_request(
            self.body, header_length=self.header_length, content_encoding=self.content_encoding
        )
        tensor = signature.model_input(request)
        if request.outputs is not None:
            signature.check_outputs(resolved.spec, (output.name for output in request.outputs))
        self.request = request
        return decode_input(tensor, shape=resolved.spec.input_shape, max_rows=self.max_rows)
