"""The application factory: ``create_app(settings)`` builds everything; importing builds nothing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from aiaas import __version__, blobs, events
from aiaas.accounts import security
from aiaas.accounts.credentials import CredentialCache
from aiaas.accounts.deps import rate_limited
from aiaas.accounts.routes import router as accounts_router
from aiaas.accounts.throttle import MemoryFailures, RedisFailures, SignInThrottle
from aiaas.admin.routes import router as admin_router
from aiaas.config import Settings, get_settings
from aiaas.context import build_context
from aiaas.datasets.routes import router as datasets_router
from aiaas.db import Database
from aiaas.dispatch.base import Dispatcher
from aiaas.dispatch.inprocess import InProcessDispatcher
from aiaas.errors import install_error_handlers
from aiaas.explanations.routes import router as explanations_router
from aiaas.explanations.service import Explainer
from aiaas.metering.meter import AccountUsageCollector, UsageMeter
from aiaas.metrics import Metrics, MetricsServer
from aiaas.middleware import BodyLimitMiddleware, RateLimitHeaders, RequestTelemetry
from aiaas.ml.limits import configure_limits
from aiaas.operations.routes import metrics_router
from aiaas.operations.routes import router as operations_router
from aiaas.operations.service import Readiness
from aiaas.predictions import service as prediction_service
from aiaas.predictions.deliveries import WebhookSender
from aiaas.predictions.directory import ModelDirectory
from aiaas.predictions.fastlane import PredictFastLane
from aiaas.predictions.routes import router as predictions_router
from aiaas.predictions.sync import PredictPath
from aiaas.presence import Presence
from aiaas.quotas import Quotas
from aiaas.quotas.routes import router as quotas_router
from aiaas.ratelimits import RateLimits, RedisLimiter, RouteClass
from aiaas.registry.routes import router as registry_router
from aiaas.storage import ArtifactStore, open_store
from aiaas.tasks import JOB_KINDS
from aiaas.tracing import Tracing
from aiaas.trainings import demo
from aiaas.trainings.routes import router as trainings_router
from aiaas.trainings.tasks import TRAINING
from aiaas.usage.counting import RowCounter
from aiaas.usage.routes import router as usage_router
from aiaas.v2.lane import OpenInferenceLane
from aiaas.v2.service import OpenInference
from aiaas.web.routes import make_router as make_web_router
from aiaas.web.routes import static_files as web_static_files

log = logging.getLogger(__name__)

MB = 1024 * 1024
_PREDICTION_SUFFIXES = ("/predict", "/infer", "/explain")


def body_limits(settings: Settings) -> BodyLimitMiddleware.LimitFor:
    json_limit = int(settings.max_json_mb * MB)
    request_limit = int(settings.max_request_mb * MB)
    upload_limit = int(settings.max_upload_mb * MB)

    def limit_for(scope: Scope) -> int:
        path: str = scope["path"].rstrip("/")
        if path.endswith(_PREDICTION_SUFFIXES) or path == "/v1/predictions":
            return request_limit
        for name, value in scope["headers"]:
            if name == b"content-type" and value.lower().startswith(b"multipart/"):
                return upload_limit
        return json_limit

    return limit_for


def make_limits(settings: Settings) -> tuple[RateLimits, SignInThrottle]:
    """Rate-limit buckets and sign-in failure counts: in Redis when there is a broker (one
    limit shared by every gateway), else in this process."""
    threshold = settings.login_failures_before_backoff
    if settings.broker_url:
        timeout = settings.broker_timeout_s
        limiter = RedisLimiter(settings.broker_url, timeout_s=timeout)
        failures = RedisFailures(settings.broker_url, timeout_s=timeout)
        return RateLimits(settings, limiter), SignInThrottle(failures, threshold=threshold)
    return RateLimits(settings), SignInThrottle(MemoryFailures(), threshold=threshold)


def make_dispatcher(
    settings: Settings,
    *,
    database: Database,
    store: ArtifactStore,
    metrics: Metrics,
    on_webhook_due: Callable[[], None],
    usage: UsageMeter | None = None,
) -> Dispatcher:
    """Celery workers when a broker is configured, else this process's own threads."""
    if settings.broker_url:
        from aiaas.dispatch.celery import CeleryDispatcher

        return CeleryDispatcher(settings, database, metrics, JOB_KINDS)

    def schedule_webhook(job_id: str, delay_s: float) -> None:
        on_webhook_due()

    ctx = build_context(
        settings,
        metrics=metrics,
        schedule_webhook=schedule_webhook,
        database=database,
        store=store,
        usage=usage,
    )
    return InProcessDispatcher(ctx, kinds=JOB_KINDS, on_webhook_due=on_webhook_due)


class Gateway(FastAPI):
    """The FastAPI app with the request metrics and the prediction lanes in front of FastAPI's
    own middleware stack.

    The lanes answer ``POST /v1/models/{name}/predict`` and every ``/v2`` route (the Open
    Inference Protocol) and catch their own errors, so they need none of that stack
    (server-error page, OpenTelemetry hooks checked on every request, body limits they enforce
    themselves); every other request goes through the lanes into FastAPI as usual.
    """

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None and scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def behind_front(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    store: ArtifactStore | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the gateway. ``database`` lets tests hand in a session factory bound to a rolled-back
    transaction; otherwise one is made from the settings and disposed at shutdown. ``tracing``
    replaces the one ``AIAAS_OTEL_ENDPOINT`` sets up (tests: an in-memory exporter)."""
    settings = (settings or get_settings()).with_secret_key()
    settings.check_gateway()
    configure_limits(
        max_activation_mb=settings.max_activation_mb,
        max_sequence_length=settings.max_sequence_length,
    )
    security.configure_password_hashing(
        time_cost=settings.password_hash_time_cost, memory_kib=settings.password_hash_memory_kib
    )
    owns_database = database is None
    db = database or Database.from_url(
        settings.resolved_database_url, timeout_s=settings.db_timeout_s
    )
    store = store or open_store(settings.resolved_artifacts_url)
    metrics = Metrics()
    tracing = tracing or Tracing.from_endpoint(settings.otel_endpoint, service="aiaas-gateway")
    bus = events.EventBus()
    webhook_sender = WebhookSender(
        db, store, allow_private=settings.webhook_allow_private, workers=settings.webhook_workers
    )
    # One meter for the process: in embedded mode its jobs and trainings count in it too.
    usage_meter = UsageMeter()
    metrics.registry.register(AccountUsageCollector(usage_meter))
    dispatcher = make_dispatcher(
        settings,
        database=db,
        store=store,
        metrics=metrics,
        on_webhook_due=webhook_sender.wake,
        usage=usage_meter,
    )
    credentials = CredentialCache(db, secret=settings.secret, ttl_s=settings.auth_cache_ttl_s)
    directory = ModelDirectory(
        db,
        ttl_s=settings.model_cache_ttl_s,
        default_max_batch_size=settings.max_batch_size,
        default_max_delay_ms=settings.max_delay_ms,
    )
    rate_limits, signin_throttle = make_limits(settings)
    bus.subscribe(events.API_KEY_REVOKED, credentials.forget_key)
    bus.subscribe(events.ACCOUNT_CHANGED, credentials.forget_account)
    bus.subscribe(events.MODEL_CHANGED, directory.forget)

    retention = timedelta(days=settings.job_retention_days)

    def housekeeping() -> None:
        dispatcher.reconcile()
        expired = prediction_service.expire_finished(
            db, store, older_than=retention, held=blobs.held
        )
        if expired:
            log.info("dropped the inputs and outputs of %d expired jobs", expired)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        metrics_server = (
            MetricsServer(
                metrics.registry,
                host=settings.metrics_host,
                port=settings.metrics_port,
                token=settings.scrape_token,
            ).start()
            if settings.metrics_port is not None
            else None
        )
        await dispatcher.start()
        # Distributed mode: listed among the gateways alive (the admin overview).
        presence = Presence(settings.broker_url, "gateway").start() if settings.broker_url else None
        # Sends what is due, what a previous run of the platform left due included.
        webhook_sender.start()
        if settings.demo_models:
            await _start_demo_trainings(db, dispatcher, settings)
        reconciler = asyncio.create_task(_reconcile_forever(housekeeping, settings))
        flusher = asyncio.create_task(_flush_usage_forever(usage_meter, db, settings))
        try:
            yield
        finally:
            for task in (reconciler, flusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(webhook_sender.close)
            if presence is not None:
                await asyncio.to_thread(presence.stop)
            await predict_path.drop_shadows()
            # Bounded: closing waits for the batches in flight, each answered or failed within
            # the predict timeout; a shutdown must never hang past that on a lost reply.
            close_s = settings.predict_timeout_s + 5
            try:
                await asyncio.wait_for(dispatcher.close(), timeout=close_s)
            except TimeoutError:
                log.warning("the dispatcher did not close within %g s; shutting down", close_s)
            # After the dispatcher: what its last jobs and trainings counted goes in too.
            with contextlib.suppress(Exception):  # counts lost only if the database is down
                await asyncio.to_thread(usage_meter.flush, db)
            if metrics_server is not None:
                metrics_server.close()
            with contextlib.suppress(TimeoutError):  # its connections die with the process
                await asyncio.wait_for(rate_limits.limiter.aclose(), timeout=5)
            signin_throttle.store.close()
            if owns_database:
                db.dispose()
            if tracing is not None:
                await asyncio.to_thread(tracing.close)

    app = Gateway(
        title="aiaas",
        version=__version__,
        summary="AI models as a service: register, pick a model, call its interface.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.metrics = metrics
    app.state.store = store
    app.state.events = bus
    app.state.dispatcher = dispatcher
    app.state.rate_limits = rate_limits
    app.state.signin_throttle = signin_throttle
    app.state.usage_meter = usage_meter
    app.state.quotas = Quotas(settings, RowCounter())
    predict_path = PredictPath(
        settings=settings,
        credentials=credentials,
        directory=directory,
        dispatcher=dispatcher,
        metrics=metrics,
        record=functools.partial(prediction_service.record_sync, db, store),
        limits=rate_limits,
        meter=usage_meter,
    )
    app.state.predict_path = predict_path
    app.state.explainer = Explainer(predict_path)
    app.state.readiness = Readiness(settings, db)

    install_error_handlers(app)
    app.include_router(operations_router)
    if settings.metrics_port is None:
        app.include_router(metrics_router)
    app.include_router(accounts_router)  # limits per route: sign-in has no credential yet
    # Limited as predict is, by the predict path it asks who calls.
    app.include_router(explanations_router)
    for router, route_class in (
        (registry_router, RouteClass.REGISTRY),
        (predictions_router, RouteClass.JOBS),  # sync predict is limited in the fast lane
        (datasets_router, RouteClass.TRAIN),
        (trainings_router, RouteClass.TRAIN),
        (admin_router, RouteClass.REGISTRY),
        (quotas_router, RouteClass.REGISTRY),
        (usage_router, RouteClass.REGISTRY),
    ):
        app.include_router(router, dependencies=[Depends(rate_limited(route_class))])

    # The dashboard: its pages authenticate by session cookie, never the API's routes.
    app.include_router(make_web_router())
    app.mount("/static", web_static_files(), name="static")

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limits(settings))
    app.add_middleware(RateLimitHeaders)
    # Every response is counted, logged and traced, the 413s included: FastAPI's by this
    # middleware, the lanes' by the lanes through it.
    telemetry = RequestTelemetry(app.behind_front, metrics=metrics, tracing=tracing)
    predict_limit = int(settings.max_request_mb * MB)
    open_inference = OpenInferenceLane(
        telemetry,
        service=OpenInference(
            path=predict_path, database=db, settings=settings, readiness=app.state.readiness
        ),
        max_body=predict_limit,
        telemetry=telemetry,
    )
    # /v1 predict is asked first: passing a /v2 request on costs it two string tests.
    app.front = PredictFastLane(
        open_inference, path=predict_path, max_body=predict_limit, telemetry=telemetry
    )
    return app


async def _start_demo_trainings(db: Database, dispatcher: Dispatcher, settings: Settings) -> None:
    try:
        started = await asyncio.to_thread(
            demo.ensure_demo_models, db, max_parameters=settings.max_model_parameters
        )
    except Exception:  # a fresh install without demos still serves everything else
        log.exception("could not start the demo model trainings")
        return
    for training_id in started:
        dispatcher.submit(TRAINING.task, training_id)


async def _flush_usage_forever(meter: UsageMeter, db: Database, settings: Settings) -> None:
    """Add what the meter counted to the usage table every AIAAS_USAGE_FLUSH_S."""
    while True:
        await asyncio.sleep(settings.usage_flush_s)
        try:
            await asyncio.to_thread(meter.flush, db)
        except Exception:  # kept for the next flush
            log.exception("usage flush failed")


async def _reconcile_forever(housekeeping: Callable[[], object], settings: Settings) -> None:
    """Hand out again the jobs whose worker vanished or whose message the broker lost, and
    expire old jobs' payloads."""
    while True:
        await asyncio.sleep(settings.reconcile_interval_s)
        work = asyncio.ensure_future(asyncio.to_thread(housekeeping))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # Shutting down: a pass in progress still holds a database connection, and the
            # database is disposed of next; a thread cannot be cancelled, so wait for it.
            with contextlib.suppress(Exception):
                await work
            raise
        except Exception:  # a database blip must not end the loop
            log.exception("reconcile failed")
