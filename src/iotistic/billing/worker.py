"""The deployment worker: takes jobs from the queue and has a `Deployer` carry them out.

Runs inside `iotistic billing serve` or alone (`iotistic billing worker`); any number of workers may share one
PostgreSQL database. Each job runs in three short transactions (claim, then the deployer's work with the lease
renewed beside it, then the outcome), so no database transaction stays open while Helm works.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing import queue
from iotistic.billing.db import settings_of
from iotistic.billing.deploy.spec import Deployer, InstanceSpec
from iotistic.billing.deploy.values import build_values
from iotistic.billing.deploy.values import values_digest as chart_values_digest
from iotistic.billing.models import JobKind
from iotistic.billing.queue import ClaimedJob
from iotistic.billing.queue_policy import QueuePolicy
from iotistic.billing.services.spec import build_spec
from iotistic.core.db import transaction, utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class JobReport:
    """What one run of the worker did."""

    job_id: int
    customer_id: str
    kind: str
    attempt: int
    outcome: str  # succeeded | queued (retry later) | failed | superseded | lost (another worker owns it now)
    error: str | None = None
    values_digest: str | None = None


@runtime_checkable
class ShowsValues(Protocol):
    """A deployer that can say which Helm values it installs for a spec (the Kubernetes deployer can)."""

    def values(self, spec: InstanceSpec) -> Mapping[str, Any]: ...


def values_digest(spec: InstanceSpec, deployer: object = None) -> str:
    """sha256 of the chart values an apply installs: the deployer's own when it can tell them (they include its
    platform settings), else the values built from the spec alone. Equal digests mean an unchanged instance."""
    values = deployer.values(spec) if isinstance(deployer, ShowsValues) else build_values(spec)
    return chart_values_digest(values)


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def policy_of(sessions: async_sessionmaker[AsyncSession]) -> QueuePolicy:
    async with sessions() as session:
        return QueuePolicy.from_settings(settings_of(session))


async def _renew_forever(sessions: async_sessionmaker[AsyncSession], job: ClaimedJob, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            async with transaction(sessions) as session:
                if not await queue.renew_lease(session, job):
                    log.warning("deployment job %s: lease lost while running (another worker took it over)", job.id)
                    return
        except Exception:  # a database hiccup must not stop the deploy; the next renewal tries again
            log.exception("deployment job %s: lease renewal failed", job.id)


async def _with_lease(sessions: async_sessionmaker[AsyncSession], job: ClaimedJob, policy: QueuePolicy,
                      work: Coroutine[Any, Any, None]) -> None:
    renewer = asyncio.create_task(_renew_forever(sessions, job, policy.heartbeat_seconds))
    try:
        await work
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    deployer: Deployer,
    policy: QueuePolicy | None = None,
    *,
    clock: Clock = utcnow,
) -> JobReport | None:
    """Run the next due job, if any, and record its outcome. None when nothing was due."""
    policy = policy or await policy_of(sessions)
    async with transaction(sessions) as session:
        job = await queue.claim(session, policy, now=clock())
    if job is None:
        return None
    digest: str | None = None
    try:
        if job.kind == JobKind.apply:
            async with sessions() as session:
                spec = await build_spec(session, job.customer_id)
            digest = values_digest(spec, deployer)
            await _with_lease(sessions, job, policy, deployer.apply(spec))
        else:
            await _with_lease(sessions, job, policy, deployer.remove(job.customer_id))
    except asyncio.CancelledError:
        # Stopping: hand the job back at once rather than leave it to the lease timeout.
        with contextlib.suppress(Exception):
            async with transaction(sessions) as session:
                await queue.record_failure(session, job, policy, error="worker stopped", now=clock(),
                                           retry_now=True)
        raise
    except Exception as exc:
        error = describe_error(exc)
        async with transaction(sessions) as session:
            status = await queue.record_failure(session, job, policy, error=error, now=clock())
        outcome = "lost" if status is None else status.value
        log.warning("deployment job %s (%s %s, attempt %s): %s -> %s", job.id, job.kind.value, job.customer_id,
                    job.attempt, error, outcome)
        return JobReport(job.id, job.customer_id, job.kind.value, job.attempt, outcome, error)
    async with transaction(sessions) as session:
        recorded = await queue.record_success(session, job, values_digest=digest, now=clock())
    outcome = "succeeded" if recorded else "lost"
    log.info("deployment job %s (%s %s, attempt %s): %s", job.id, job.kind.value, job.customer_id, job.attempt,
             outcome)
    return JobReport(job.id, job.customer_id, job.kind.value, job.attempt, outcome, values_digest=digest)


async def run_until_idle(sessions: async_sessionmaker[AsyncSession], deployer: Deployer,
                         policy: QueuePolicy | None = None, *, clock: Clock = utcnow,
                         limit: int = 1000) -> list[JobReport]:
    """Run due jobs until none is left (tests, one-shot operator runs)."""
    policy = policy or await policy_of(sessions)
    reports: list[JobReport] = []
    while len(reports) < limit:
        report = await run_once(sessions, deployer, policy, clock=clock)
        if report is None:
            break
        reports.append(report)
    return reports


async def run_forever(sessions: async_sessionmaker[AsyncSession], deployer: Deployer, stop: asyncio.Event,
                      policy: QueuePolicy | None = None, *, poll_seconds: float | None = None) -> None:
    """Work until `stop` is set: jobs back to back while there are any, else a look every `poll_seconds`."""
    if poll_seconds is None:
        async with sessions() as session:
            poll_seconds = settings_of(session).worker_poll_seconds
    policy = policy or await policy_of(sessions)
    while not stop.is_set():
        try:
            report = await run_once(sessions, deployer, policy)
        except Exception:  # e.g. the database briefly unreachable: keep the worker alive, try again later
            log.exception("deployment worker: run failed")
            report = None
        if report is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
