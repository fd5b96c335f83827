"""The durable deployment queue, kept in the billing database (`deployment_jobs`).

Rules:
- at most one queued job per customer: enqueueing supersedes the older queued one (a partial unique index makes
  the database enforce it). Jobs carry no spec: `apply` applies the customer's spec as it is when the job runs,
  so the newest job alone decides what the instance becomes, and a retry is always safe;
- one running job per customer: the worker never starts a customer's job while another one of that customer runs;
- a running job holds a lease (`updated_at`, renewed by its worker). When a worker dies, the lease runs out and
  the job is taken over; `attempts` doubles as a fencing token, so a worker that lost its lease cannot record an
  outcome over the new owner's;
- a failed attempt is retried after an exponential backoff, until `max_attempts`, then the job is `failed`.

Locking, PostgreSQL: the customer's row is the lock of its jobs; every writer takes it first (the worker with
`FOR UPDATE SKIP LOCKED`, so workers pass each other's customers by), then touches jobs. SQLite: every write
transaction starts with `BEGIN IMMEDIATE` (core.db), so writers run one at a time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from iotistic.billing.db import settings_of
from iotistic.billing.deploy.spec import namespace_for
from iotistic.billing.models import Customer, Deployment, DeploymentJob, DeploymentStatus, JobKind, JobStatus
from iotistic.billing.queue_policy import DEFAULT_MAX_ATTEMPTS, QueuePolicy
from iotistic.core.db import utcnow

# Errors are kept for people to read; a deployer's output beyond this is noise.
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker now runs. `attempt` is the fencing token its outcome is recorded with."""

    id: int
    customer_id: str
    kind: JobKind
    attempt: int


async def lock_customer(session: AsyncSession, customer_id: str) -> None:
    """Serialise changes to one customer (PostgreSQL; SQLite writers are serial already). Everything that changes
    a customer's subscription or jobs takes this lock first, so two such transactions never deadlock."""
    found = await session.scalar(select(Customer.id).where(Customer.id == customer_id).with_for_update())
    if found is None:
        raise LookupError(f"customer {customer_id} not found")


async def enqueue(
    session: AsyncSession,
    customer_id: str,
    kind: JobKind | str,
    run_after: dt.datetime | None = None,
    *,
    max_attempts: int | None = None,
) -> DeploymentJob:
    """Queue a job in the caller's transaction (flushed, not committed), superseding the customer's queued one."""
    kind = JobKind(kind)
    if max_attempts is None:
        try:
            max_attempts = settings_of(session).queue_max_attempts
        except RuntimeError:
            max_attempts = DEFAULT_MAX_ATTEMPTS
    await lock_customer(session, customer_id)
    now = utcnow()
    await session.execute(
        update(DeploymentJob)
        .where(DeploymentJob.customer_id == customer_id, DeploymentJob.status == JobStatus.queued)
        .values(status=JobStatus.superseded, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    job = DeploymentJob(customer_id=customer_id, kind=kind, status=JobStatus.queued, attempts=0,
                        max_attempts=max_attempts, run_after=run_after or now, created_at=now, updated_at=now)
    session.add(job)
    await ensure_deployment(session, customer_id)
    await session.flush()
    return job


async def ensure_deployment(session: AsyncSession, customer_id: str) -> Deployment:
    deployment = await session.get(Deployment, customer_id)
    if deployment is None:
        deployment = Deployment(customer_id=customer_id, status=DeploymentStatus.pending,
                                namespace=namespace_for(customer_id), revision=0)
        session.add(deployment)
    return deployment


async def newest_job(session: AsyncSession, customer_id: str) -> DeploymentJob | None:
    return await session.scalar(
        select(DeploymentJob).where(DeploymentJob.customer_id == customer_id)
        .order_by(DeploymentJob.id.desc()).limit(1)
    )


def _claimable(job: type[DeploymentJob], now: dt.datetime, cutoff: dt.datetime) -> ColumnElement[bool]:
    return or_(
        and_(job.status == JobStatus.queued, job.run_after <= now),
        and_(job.status == JobStatus.running, job.updated_at < cutoff),
    )


async def claim(session: AsyncSession, policy: QueuePolicy, *, now: dt.datetime | None = None) -> ClaimedJob | None:
    """Take the next due job (or one whose worker died) and mark it running. Commit right after."""
    now = now or utcnow()
    cutoff = policy.lease_cutoff(now)
    other = aliased(DeploymentJob)
    live_elsewhere = exists().where(other.customer_id == DeploymentJob.customer_id,
                                    other.status == JobStatus.running, other.updated_at >= cutoff)
    # Several rounds: one may only tidy up a customer (e.g. a dead worker's job superseded by a queued one that
    # is not due yet) and find nothing to run there.
    for _ in range(5):
        customer_id = await session.scalar(
            select(Customer.id)
            .join(DeploymentJob, DeploymentJob.customer_id == Customer.id)
            .where(_claimable(DeploymentJob, now, cutoff), ~live_elsewhere)
            .order_by(DeploymentJob.run_after, DeploymentJob.id)
            .limit(1)
            .with_for_update(of=Customer, skip_locked=True)
        )
        if customer_id is None:
            return None
        claimed = await _claim_for_customer(session, customer_id, policy, now)
        if claimed is not None:
            return claimed
    return None


async def _claim_for_customer(session: AsyncSession, customer_id: str, policy: QueuePolicy,
                              now: dt.datetime) -> ClaimedJob | None:
    cutoff = policy.lease_cutoff(now)
    jobs = list(await session.scalars(
        select(DeploymentJob)
        .where(DeploymentJob.customer_id == customer_id,
               DeploymentJob.status.in_([JobStatus.queued, JobStatus.running]))
        .order_by(DeploymentJob.id)
    ))
    if any(j.status == JobStatus.running and j.updated_at >= cutoff for j in jobs):
        return None  # another worker got there first
    queued = [j for j in jobs if j.status == JobStatus.queued]
    stale = [j for j in jobs if j.status == JobStatus.running]
    # The newest job decides: a queued one is always newer than the running ones it found.
    chosen = queued[-1] if queued else stale[-1]
    for job in stale:
        if job is not chosen:
            job.status = JobStatus.superseded
            job.last_error = f"worker lost during attempt {job.attempts}; superseded by job {chosen.id}"
            job.updated_at = now
    deployment = await ensure_deployment(session, customer_id)
    if chosen.status == JobStatus.queued and chosen.run_after > now:
        await session.flush()
        return None
    if chosen.status == JobStatus.running and chosen.attempts >= chosen.max_attempts:
        chosen.status = JobStatus.failed
        chosen.last_error = f"worker lost during the last attempt ({chosen.attempts} of {chosen.max_attempts})"
        chosen.updated_at = now
        deployment.status = DeploymentStatus.failed
        deployment.last_error = chosen.last_error
        await session.flush()
        return None
    chosen.status = JobStatus.running
    chosen.attempts += 1
    chosen.updated_at = now
    deployment.status = DeploymentStatus.deploying if chosen.kind == JobKind.apply else DeploymentStatus.removing
    await session.flush()
    return ClaimedJob(id=chosen.id, customer_id=customer_id, kind=JobKind(chosen.kind), attempt=chosen.attempts)


async def renew_lease(session: AsyncSession, job: ClaimedJob, *, now: dt.datetime | None = None) -> bool:
    """Extend the lease of a job this worker runs; False when the job is no longer ours."""
    result = await session.execute(
        update(DeploymentJob)
        .where(DeploymentJob.id == job.id, DeploymentJob.status == JobStatus.running,
               DeploymentJob.attempts == job.attempt)
        .values(updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _owned(session: AsyncSession, job: ClaimedJob) -> DeploymentJob | None:
    await lock_customer(session, job.customer_id)
    row = await session.get(DeploymentJob, job.id, populate_existing=True)
    if row is None or row.status != JobStatus.running or row.attempts != job.attempt:
        return None  # our lease ran out and another worker owns the job now
    return row


async def record_success(session: AsyncSession, job: ClaimedJob, *, values_digest: str | None = None,
                         now: dt.datetime | None = None) -> bool:
    """The job did its work. False when the worker had lost the job (nothing recorded)."""
    now = now or utcnow()
    row = await _owned(session, job)
    if row is None:
        return False
    row.status = JobStatus.succeeded
    row.last_error = None
    row.updated_at = now
    deployment = await ensure_deployment(session, job.customer_id)
    if job.kind == JobKind.apply:
        deployment.status = DeploymentStatus.deployed
        deployment.values_digest = values_digest
        deployment.revision += 1
    else:
        deployment.status = DeploymentStatus.removed
        deployment.values_digest = None
    deployment.last_error = None
    await session.flush()
    return True


async def record_failure(session: AsyncSession, job: ClaimedJob, policy: QueuePolicy, *, error: str,
                         now: dt.datetime | None = None, retry_now: bool = False) -> JobStatus | None:
    """The attempt failed: retry later, give up, or step aside for a newer job. Returns the job's new status,
    None when the worker had lost the job. `retry_now`: the worker stopped, not the deployer; no backoff."""
    now = now or utcnow()
    row = await _owned(session, job)
    if row is None:
        return None
    error = error[:MAX_ERROR_LENGTH]
    newer = await session.scalar(
        select(DeploymentJob.id).where(DeploymentJob.customer_id == job.customer_id,
                                       DeploymentJob.status == JobStatus.queued).limit(1)
    )
    deployment = await ensure_deployment(session, job.customer_id)
    row.last_error = error
    row.updated_at = now
    if newer is not None:
        row.status = JobStatus.superseded  # the newer job applies the current spec anyway
    elif row.attempts >= row.max_attempts and not retry_now:
        row.status = JobStatus.failed
        deployment.status = DeploymentStatus.failed
    elif retry_now:
        row.status = JobStatus.queued
        row.attempts -= 1  # the deployer did not fail: this attempt does not count
        row.run_after = now
    else:
        row.status = JobStatus.queued
        row.run_after = now + policy.backoff(row.attempts)
    deployment.last_error = error
    await session.flush()
    return JobStatus(row.status)
