"""The deployment queue and worker against real databases (SQLite and PostgreSQL), with a recording deployer."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing import queue, worker
from iotistic.billing.models import Deployment, DeploymentJob, JobKind, License, Subscription
from iotistic.billing.queue_policy import QueuePolicy
from iotistic.billing.services import customers, licences, subscriptions
from iotistic.core.db import transaction, utcnow
from iotistic.core.licensing import evaluate_license
from tests.billing.conftest import BILLING_PASSWORD, RecordingDeployer

Sessions = async_sessionmaker[AsyncSession]
POLICY = QueuePolicy(backoff_seconds=10, backoff_max_seconds=15, lease_seconds=30)


@pytest.fixture
def billing_settings_env() -> dict[str, Any]:
    return {"BILLING_QUEUE_MAX_ATTEMPTS": 3}  # each job's max_attempts, set when it is queued


async def new_customer(sessions: Sessions, plan: str = "starter") -> str:
    async with transaction(sessions) as session:
        customer = await customers.signup(session, email=f"{plan}-{utcnow().timestamp()}@example.com",
                                          password=BILLING_PASSWORD, company="Acme", plan=plan)
    return customer.id


async def jobs_of(sessions: Sessions, customer_id: str) -> list[DeploymentJob]:
    async with sessions() as session:
        return list(await session.scalars(
            select(DeploymentJob).where(DeploymentJob.customer_id == customer_id).order_by(DeploymentJob.id)))


async def deployment_of(sessions: Sessions, customer_id: str) -> Deployment:
    async with sessions() as session:
        deployment = await session.get(Deployment, customer_id)
    assert deployment is not None
    return deployment


async def test_worker_applies_the_customers_current_spec(billing_sessions: Sessions,
                                                         recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions, "professional")
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY)
    assert report is not None and report.outcome == "succeeded" and report.customer_id == customer_id
    [spec] = recording_deployer.applied
    async with billing_sessions() as session:
        licence = await licences.current(session, customer_id)
    assert licence is not None
    assert (spec.customer_id, spec.plan, spec.subscription_status) == (customer_id, "professional", "trialing")
    assert spec.license_jwt == licence.token
    assert spec.ingress_host == f"{customer_id}.customers.iotistic.test"
    assert spec.namespace == f"customer-{customer_id}"
    deployment = await deployment_of(billing_sessions, customer_id)
    assert (deployment.status, deployment.revision, deployment.last_error) == ("deployed", 1, None)
    assert deployment.values_digest == worker.values_digest(spec) == report.values_digest
    [job] = await jobs_of(billing_sessions, customer_id)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert await worker.run_once(billing_sessions, recording_deployer, POLICY) is None


async def test_failures_back_off_exponentially_then_give_up(billing_sessions: Sessions,
                                                            recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions)
    recording_deployer.fail_next(10, "helm: connection refused")
    t0 = utcnow()
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY, clock=lambda: t0)
    assert report is not None and report.outcome == "queued"
    assert report.error == "RuntimeError: helm: connection refused"
    [job] = await jobs_of(billing_sessions, customer_id)
    assert job.run_after == t0 + dt.timedelta(seconds=10)
    assert (await deployment_of(billing_sessions, customer_id)).status == "deploying"

    # Not due before its time.
    assert await worker.run_once(billing_sessions, recording_deployer, POLICY,
                                 clock=lambda: t0 + dt.timedelta(seconds=9)) is None
    t1 = t0 + dt.timedelta(seconds=10)
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY, clock=lambda: t1)
    assert report is not None and report.outcome == "queued" and report.attempt == 2
    [job] = await jobs_of(billing_sessions, customer_id)
    assert job.run_after == t1 + dt.timedelta(seconds=15)  # 20 s, capped at backoff_max_seconds

    t2 = t1 + dt.timedelta(seconds=15)
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY, clock=lambda: t2)
    assert report is not None and report.outcome == "failed" and report.attempt == 3
    [job] = await jobs_of(billing_sessions, customer_id)
    assert (job.status, job.attempts, job.last_error) == ("failed", 3, "RuntimeError: helm: connection refused")
    deployment = await deployment_of(billing_sessions, customer_id)
    assert (deployment.status, deployment.revision) == ("failed", 0)
    assert deployment.last_error == "RuntimeError: helm: connection refused"
    assert len(recording_deployer.calls) == 3
    assert await worker.run_once(billing_sessions, recording_deployer, POLICY,
                                 clock=lambda: t2 + dt.timedelta(days=1)) is None

    # A new job (e.g. the operator's redeploy) starts over and clears the error.
    recording_deployer.fail_next(0)
    async with transaction(billing_sessions) as session:
        await queue.enqueue(session, customer_id, JobKind.apply)
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY)
    assert report is not None and report.outcome == "succeeded"
    deployment = await deployment_of(billing_sessions, customer_id)
    assert (deployment.status, deployment.revision, deployment.last_error) == ("deployed", 1, None)


def test_backoff_is_exponential_and_capped() -> None:
    policy = QueuePolicy(backoff_seconds=5, backoff_max_seconds=60)
    assert [policy.backoff(n).total_seconds() for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert policy.backoff(10_000).total_seconds() == 60


async def test_a_new_job_supersedes_the_queued_one(billing_sessions: Sessions,
                                                   recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions)
    async with transaction(billing_sessions) as session:
        await queue.enqueue(session, customer_id, JobKind.apply)
        await queue.enqueue(session, customer_id, JobKind.apply)
    jobs = await jobs_of(billing_sessions, customer_id)
    assert [j.status for j in jobs] == ["superseded", "superseded", "queued"]
    reports = await worker.run_until_idle(billing_sessions, recording_deployer, POLICY)
    assert [(r.job_id, r.outcome) for r in reports] == [(jobs[-1].id, "succeeded")]
    assert len(recording_deployer.calls) == 1


async def test_the_database_refuses_a_second_queued_job(billing_sessions: Sessions) -> None:
    customer_id = await new_customer(billing_sessions)
    with pytest.raises(IntegrityError):
        async with transaction(billing_sessions) as session:
            session.add(DeploymentJob(customer_id=customer_id, kind="apply", status="queued", attempts=0,
                                      max_attempts=3))
    assert [j.status for j in await jobs_of(billing_sessions, customer_id)] == ["queued"]


async def test_a_change_while_a_job_runs_waits_for_it_then_applies(billing_sessions: Sessions) -> None:
    customer_id = await new_customer(billing_sessions, "starter")
    deployer = RecordingDeployer(gate=asyncio.Event())
    running = asyncio.create_task(worker.run_once(billing_sessions, deployer, POLICY))
    await asyncio.wait_for(deployer.started.wait(), 10)
    async with transaction(billing_sessions) as session:
        assert await subscriptions.change(session, customer_id, plan="enterprise", status="active")
    # The customer's new job must not start while its first one still runs, on any worker.
    assert await worker.run_once(billing_sessions, RecordingDeployer(), POLICY) is None
    deployer.gate.set()  # type: ignore[union-attr]
    first = await running
    assert first is not None and first.outcome == "succeeded"
    second = await worker.run_once(billing_sessions, deployer, POLICY)
    assert second is not None and second.outcome == "succeeded"
    assert [s.plan for s in deployer.applied] == ["starter", "enterprise"]
    assert deployer.applied[1].subscription_status == "active"
    deployment = await deployment_of(billing_sessions, customer_id)
    assert deployment.revision == 2
    assert first.values_digest != second.values_digest == deployment.values_digest


async def test_a_dead_workers_job_is_taken_over_after_its_lease(billing_sessions: Sessions,
                                                                recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions)
    t0 = utcnow()
    async with transaction(billing_sessions) as session:
        lost = await queue.claim(session, POLICY, now=t0)  # this worker dies without a word
    assert lost is not None and lost.attempt == 1
    assert await worker.run_once(billing_sessions, recording_deployer, POLICY,
                                 clock=lambda: t0 + dt.timedelta(seconds=29)) is None
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY,
                                   clock=lambda: t0 + dt.timedelta(seconds=31))
    assert report is not None and (report.job_id, report.attempt, report.outcome) == (lost.id, 2, "succeeded")
    # The dead worker coming back cannot record over the new owner's outcome.
    async with transaction(billing_sessions) as session:
        assert await queue.record_success(session, lost, values_digest="stale") is False
    async with transaction(billing_sessions) as session:
        assert await queue.record_failure(session, lost, POLICY, error="late") is None
        assert await queue.renew_lease(session, lost) is False
    deployment = await deployment_of(billing_sessions, customer_id)
    assert (deployment.status, deployment.revision) == ("deployed", 1)
    assert deployment.values_digest == report.values_digest


async def test_a_job_lost_on_its_last_attempt_fails(billing_sessions: Sessions,
                                                    recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions)
    policy = QueuePolicy(lease_seconds=30)
    async with transaction(billing_sessions) as session:
        await queue.enqueue(session, customer_id, JobKind.apply, max_attempts=1)
    t0 = utcnow()
    async with transaction(billing_sessions) as session:
        assert await queue.claim(session, policy, now=t0) is not None
    assert await worker.run_once(billing_sessions, recording_deployer, policy,
                                 clock=lambda: t0 + dt.timedelta(seconds=31)) is None
    job = (await jobs_of(billing_sessions, customer_id))[-1]
    assert (job.status, job.attempts) == ("failed", 1) and "worker lost" in (job.last_error or "")
    assert (await deployment_of(billing_sessions, customer_id)).status == "failed"
    assert recording_deployer.calls == []


async def test_a_running_worker_renews_its_lease(billing_sessions: Sessions) -> None:
    customer_id = await new_customer(billing_sessions)
    policy = QueuePolicy(lease_seconds=0.6)  # renewed every 0.2 s
    deployer = RecordingDeployer(gate=asyncio.Event())
    running = asyncio.create_task(worker.run_once(billing_sessions, deployer, policy))
    await asyncio.wait_for(deployer.started.wait(), 10)
    await asyncio.sleep(1.2)  # twice the lease: without renewals another worker would take the job over
    assert await worker.run_once(billing_sessions, RecordingDeployer(), policy) is None
    deployer.gate.set()  # type: ignore[union-attr]
    report = await running
    assert report is not None and report.outcome == "succeeded" and report.attempt == 1
    [job] = await jobs_of(billing_sessions, customer_id)
    assert job.attempts == 1


async def test_workers_in_parallel_take_different_customers(billing_sessions: Sessions) -> None:
    ids = {await new_customer(billing_sessions) for _ in range(3)}
    deployer = RecordingDeployer(gate=asyncio.Event())
    runs = [asyncio.create_task(worker.run_once(billing_sessions, deployer, POLICY)) for _ in range(4)]
    for _ in range(200):
        if len(deployer.calls) == 3 or any(r.done() for r in runs):
            break
        await asyncio.sleep(0.02)
    deployer.gate.set()  # type: ignore[union-attr]
    reports = await asyncio.gather(*runs)
    done = [r for r in reports if r is not None]
    assert sorted(r.customer_id for r in done) == sorted(ids)
    assert all(r.outcome == "succeeded" for r in done)
    assert reports.count(None) == 1
    assert sorted(s.customer_id for s in deployer.applied) == sorted(ids)


async def test_cancellation_removes_the_instance_after_the_grace_period(
        billing_sessions: Sessions, recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions)
    await worker.run_until_idle(billing_sessions, recording_deployer, POLICY)
    async with transaction(billing_sessions) as session:
        assert await subscriptions.change(session, customer_id, status="canceled")
    async with billing_sessions() as session:
        subscription = await session.get(Subscription, customer_id)
        licence = await licences.current(session, customer_id)
    assert subscription is not None and subscription.cancel_effective_at is not None
    grace_end = subscription.cancel_effective_at
    assert dt.timedelta(days=7) - dt.timedelta(minutes=1) < grace_end - utcnow() <= dt.timedelta(days=7)
    assert licence is not None and licence.subscription_status == "canceled"
    job = (await jobs_of(billing_sessions, customer_id))[-1]
    assert (job.kind, job.status, job.run_after) == ("remove", "queued", grace_end)

    assert await worker.run_once(billing_sessions, recording_deployer, POLICY) is None  # still in grace
    report = await worker.run_once(billing_sessions, recording_deployer, POLICY,
                                   clock=lambda: grace_end + dt.timedelta(seconds=1))
    assert report is not None and (report.kind, report.outcome) == ("remove", "succeeded")
    assert recording_deployer.calls[-1] == ("remove", customer_id)
    deployment = await deployment_of(billing_sessions, customer_id)
    assert (deployment.status, deployment.values_digest) == ("removed", None)


async def test_reactivation_in_the_grace_period_cancels_the_removal(
        billing_sessions: Sessions, recording_deployer: RecordingDeployer) -> None:
    customer_id = await new_customer(billing_sessions)
    async with transaction(billing_sessions) as session:
        await subscriptions.change(session, customer_id, status="canceled")
    async with transaction(billing_sessions) as session:
        # A plan change while canceled is recorded but keeps the removal as the newest job.
        assert await subscriptions.change(session, customer_id, plan="professional")
    assert [(j.kind, j.status) for j in await jobs_of(billing_sessions, customer_id)][-1] == ("remove", "queued")
    async with transaction(billing_sessions) as session:
        assert await subscriptions.change(session, customer_id, status="active")
    async with billing_sessions() as session:
        subscription = await session.get(Subscription, customer_id)
    assert subscription is not None and subscription.cancel_effective_at is None
    jobs = await jobs_of(billing_sessions, customer_id)
    assert [(j.kind, j.status) for j in jobs] == [("apply", "superseded"), ("remove", "superseded"),
                                                  ("apply", "queued")]
    await worker.run_until_idle(billing_sessions, recording_deployer, POLICY,
                                clock=lambda: utcnow() + dt.timedelta(days=30))
    assert [kind for kind, _ in recording_deployer.calls] == ["apply"]
    assert recording_deployer.applied[0].plan == "professional"


async def test_older_events_never_roll_the_subscription_back(billing_sessions: Sessions) -> None:
    customer_id = await new_customer(billing_sessions)
    t = utcnow().replace(microsecond=0)
    async with transaction(billing_sessions) as session:
        assert await subscriptions.change(session, customer_id, plan="enterprise", status="active", event_time=t)
    async with transaction(billing_sessions) as session:
        assert not await subscriptions.change(session, customer_id, plan="professional",
                                              event_time=t - dt.timedelta(seconds=5))
        assert not await subscriptions.change(session, customer_id, plan="enterprise", status="active",
                                              event_time=t)
    async with billing_sessions() as session:
        subscription = await session.get(Subscription, customer_id)
        count = len(list(await session.scalars(select(License).where(License.customer_id == customer_id))))
    assert subscription is not None and (subscription.plan, subscription.stripe_state_at) == ("enterprise", t)
    assert count == 2  # signup's and the upgrade's


async def test_a_renewal_extends_the_licence(billing_sessions: Sessions, license_keys: Any) -> None:
    customer_id = await new_customer(billing_sessions)
    start = utcnow().replace(microsecond=0)
    end = start + dt.timedelta(days=30)
    async with transaction(billing_sessions) as session:
        await subscriptions.change(session, customer_id, status="active", period_start=start, period_end=end)
    async with transaction(billing_sessions) as session:
        assert await subscriptions.change(session, customer_id, period_start=end, period_end=end + dt.timedelta(30))
        licence = await licences.current(session, customer_id)
    assert licence is not None
    assert licence.expires_at == end + dt.timedelta(days=30 + 7)  # period end + BILLING_LICENSE_GRACE_DAYS
    state = evaluate_license(licence.token, license_keys.public_pem)
    assert state.mode == "licensed" and state.subscription["currentPeriodEnd"] == int((end + dt.timedelta(30))
                                                                                      .timestamp())
    assert [j.status for j in await jobs_of(billing_sessions, customer_id)][-1] == "queued"


async def test_a_failed_change_writes_nothing(billing_sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    customer_id = await new_customer(billing_sessions)

    async def broken_enqueue(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(queue, "enqueue", broken_enqueue)
    with pytest.raises(RuntimeError):
        async with transaction(billing_sessions) as session:
            await subscriptions.change(session, customer_id, plan="enterprise")
    async with billing_sessions() as session:
        subscription = await session.get(Subscription, customer_id)
        count = len(list(await session.scalars(select(License).where(License.customer_id == customer_id))))
    assert subscription is not None and subscription.plan == "starter"
    assert count == 1


async def test_bad_changes_are_refused(billing_sessions: Sessions) -> None:
    customer_id = await new_customer(billing_sessions)
    async with transaction(billing_sessions) as session:
        with pytest.raises(ValueError, match="unknown plan"):
            await subscriptions.change(session, customer_id, plan="free")
        with pytest.raises(ValueError):
            await subscriptions.change(session, customer_id, status="paused")
        with pytest.raises(LookupError):
            await subscriptions.change(session, "c000000000000", plan="starter")


async def test_a_stopping_worker_hands_its_job_back(billing_sessions: Sessions) -> None:
    customer_id = await new_customer(billing_sessions)
    deployer = RecordingDeployer(gate=asyncio.Event())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(billing_sessions, deployer, stop, POLICY, poll_seconds=0.05))
    await asyncio.wait_for(deployer.started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [job] = await jobs_of(billing_sessions, customer_id)
    assert (job.status, job.attempts, job.last_error) == ("queued", 0, "worker stopped")
    assert job.run_after <= utcnow()
    report = await worker.run_once(billing_sessions, RecordingDeployer(), POLICY)
    assert report is not None and report.outcome == "succeeded"


async def test_the_digest_is_of_the_values_the_deployer_installs(billing_sessions: Sessions) -> None:
    from iotistic.billing.deploy.values import build_values, values_digest

    class ValuesDeployer(RecordingDeployer):
        def values(self, spec: Any) -> dict[str, Any]:
            return {**build_values(spec), "image": {"repository": "registry.example/iotistic", "tag": "1.2.3"}}

    customer_id = await new_customer(billing_sessions, "enterprise")
    deployer = ValuesDeployer()
    report = await worker.run_once(billing_sessions, deployer, POLICY)
    assert report is not None and report.outcome == "succeeded"
    [spec] = deployer.applied
    assert report.values_digest == values_digest(deployer.values(spec))
    assert report.values_digest != values_digest(build_values(spec))
    assert (await deployment_of(billing_sessions, customer_id)).values_digest == report.values_digest
