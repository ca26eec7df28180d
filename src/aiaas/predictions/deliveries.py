"""Webhook deliveries: due rows, claimed one attempt at a time, sent by a bounded pool.

A job's row is its delivery queue (``webhook_due_at``, ``webhook_attempts``): finishing a job
sets the due time in the same update that stores its result, so a restart between the two
cannot lose the webhook, and a sender started later (after a crash, on another gateway) sends
whatever is due. Each attempt is claimed with a compare-and-set on ``webhook_claimed_until``, so
two senders never send the same attempt at once; a sender that dies mid-attempt leaves a claim
that expires, and the attempt is sent again. Receivers therefore get every webhook at least
once and must dedupe on the job id.

Threads are bounded: one poller and ``AIAAS_WEBHOOK_WORKERS`` senders per process, however many
deliveries are pending or failing; no database session is open while a receiver is talked to.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import orjson
from sqlalchemy import or_, select, update

from aiaas.accounts.models import User
from aiaas.db import Database, utcnow
from aiaas.predictions import webhooks
from aiaas.predictions.models import Prediction
from aiaas.predictions.service import to_read
from aiaas.storage import ArtifactStore

log = logging.getLogger(__name__)

# A claim outlives the attempt's own deadline by this much before another sender may retry it.
CLAIM_MARGIN_S = 30.0

Deliver = Callable[..., webhooks.Attempt]


class WebhookSender:
    def __init__(
        self,
        database: Database,
        store: ArtifactStore,
        *,
        allow_private: bool,
        workers: int = 4,
        poll_s: float = 1.0,
        deadline_s: float = webhooks.DELIVERY_TIMEOUT_S,
        deliver: Deliver = webhooks.deliver,
    ) -> None:
        self._database = database
        self._store = store
        self._allow_private = allow_private
        self._workers = workers
        self._poll_s = poll_s
        self._deadline_s = deadline_s
        self._deliver = deliver
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="aiaas-webhooks")
        self._busy = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._run, name="aiaas-webhook-poller", daemon=True)

    def start(self) -> WebhookSender:
        self._poller.start()
        return self

    def wake(self) -> None:
        """A webhook just became due: look now rather than at the next poll."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._poller.is_alive():
            self._poller.join(timeout=5)
        # An attempt in flight ends within its deadline; its claim expires if it cannot record.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # a database blip: the next poll tries again
                log.exception("webhook sweep failed")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def sweep(self) -> int:
        """Claim as many due attempts as there are free senders and start them."""
        with self._lock:
            free = self._workers - self._busy
        if free <= 0:
            return 0
        now = utcnow()
        claimable = or_(
            Prediction.webhook_claimed_until.is_(None), Prediction.webhook_claimed_until < now
        )
        due = (
            Prediction.webhook_due_at.is_not(None),
            Prediction.webhook_due_at <= now,
            Prediction.webhook_delivered_at.is_(None),
        )
        started = 0
        with self._database.session() as session:
            candidates = list(
                session.scalars(
                    select(Prediction.id)
                    .where(*due, claimable)
                    .order_by(Prediction.webhook_due_at)
                    .limit(free)
                )
            )
            session.rollback()  # end the read before the claims
            until = now + timedelta(seconds=self._deadline_s + CLAIM_MARGIN_S)
            for job_id in candidates:
                claimed = session.execute(
                    update(Prediction)
                    .where(Prediction.id == job_id, *due, claimable)
                    .values(webhook_claimed_until=until)
                )
                session.commit()
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another sender took it
                with self._lock:
                    self._busy += 1
                self._pool.submit(self._attempt, job_id, until)
                started += 1
        return started

    def _attempt(self, job_id: uuid.UUID, claim: datetime) -> None:
        try:
            self.attempt(job_id, claim=claim)
        except Exception:  # the claim expires and another attempt follows
            log.exception("webhook attempt for %s failed", job_id)
        finally:
            with self._lock:
                self._busy -= 1
            self._wake.set()  # a slot is free: more may be due

    def attempt(self, job_id: uuid.UUID, *, claim: datetime | None = None) -> bool:
        """One delivery attempt of a claimed job. True once delivered. Once a delivery is
        recorded nothing overwrites it: a sender that ran past its claim (and was taken
        over) cannot undo the other sender's delivery."""
        # Read what the attempt needs, then close the session: the receiver may take its time.
        with self._database.session() as session:
            job = session.get(Prediction, job_id)
            if job is None or not job.webhook_url:
                return False
            owner = session.get(User, job.owner_id)
            assert owner is not None
            url, secret = job.webhook_url, owner.webhook_secret
            body = orjson.dumps(to_read(job, store=self._store).model_dump(mode="json"))
        result = self._deliver(
            url,
            body,
            secret=secret,
            allow_private=self._allow_private,
            deadline_s=self._deadline_s,
        )
        with self._database.session() as session:
            job = session.get(Prediction, job_id)
            if job is None:
                return result.delivered
            retries_done = job.webhook_attempts  # before this one
            next_due = None
            if not result.delivered and retries_done < len(webhooks.RETRY_DELAYS_S):
                next_due = utcnow() + timedelta(seconds=webhooks.RETRY_DELAYS_S[retries_done])
            session.execute(
                update(Prediction)
                .where(Prediction.id == job_id, Prediction.webhook_delivered_at.is_(None))
                .values(
                    webhook_attempts=Prediction.webhook_attempts + 1,
                    webhook_last_status=result.status,
                    webhook_delivered_at=utcnow() if result.delivered else None,
                    webhook_due_at=next_due,
                    webhook_claimed_until=None,
                )
            )
            session.commit()
        if not result.delivered:
            log.info("webhook for %s not delivered: %s", job_id, result.error)
        return result.delivered
