"""IFC import jobs: parse in a worker thread (the event loop stays free), apply in one transaction, with progress.

`import_file` is the import itself (used by the API's background jobs and by `iotistic twin import`):
read_ifc -> snapshot_from_ifc -> `SqlGraphStore.apply_snapshot` in one transaction, so a failure at any step leaves
the graph as it was. `ImportJobs` runs it for uploaded files and keeps each job's status in `twin_imports`
(queued, running, succeeded, failed; phase and percent; the report or the error), so a status survives restarts.
A running job writes a heartbeat with its progress; a queued or running job whose heartbeat is old was
interrupted (its process stopped) and is marked failed, at start and whenever jobs are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.core.db import utcnow
from iotistic.twin.graph import GraphSnapshot
from iotistic.twin.ifc_import import IfcError, read_ifc, snapshot_from_ifc
from iotistic.twin.models import TwinImport
from iotistic.twin.planning import SnapshotError
from iotistic.twin.store import ApplyReport, SqlGraphStore

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
# A queued or running job whose heartbeat is older than this was interrupted. Generous: on SQLite a heartbeat
# waits while a large import's transaction holds the write lock.
STALE_AFTER = dt.timedelta(seconds=90)
INTERRUPTED = "interrupted: the server stopped while the import ran; upload the file again"

# Overall progress: parsing is the first 40%, building the graph the next 30%, applying it the rest.
_SNAPSHOT_SPAN = (40, 70)
_SNAPSHOT_PHASES = ("relationships", "spatial", "elements", "zones", "properties")

# (phase, percent 0-100); may be called from the parsing thread.
ProgressFn = Callable[[str, int], None]


class ImportStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


def import_report(snapshot: GraphSnapshot, report: ApplyReport) -> dict[str, Any]:
    """What an import did: the file's schema and node counts per type, then the store's changes."""
    return {"schema": snapshot.schema, "counts": snapshot.counts(), "nodes": len(snapshot.nodes),
            "edges": len(snapshot.edges), **report.as_dict()}


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    path: str | os.PathLike[str],
    source: str,
    on_progress: ProgressFn | None = None,
    *,
    before_commit: Callable[[AsyncSession, dict[str, Any]], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Import one IFC file as `source`; returns `import_report`. Raises IfcError or SnapshotError (bad file: the
    graph is untouched). `before_commit` runs inside the import's transaction (the job records its success there)."""
    progress = on_progress or (lambda _phase, _percent: None)
    progress("parse", 0)
    model = await asyncio.to_thread(read_ifc, path)

    low, high = _SNAPSHOT_SPAN
    step = (high - low) / len(_SNAPSHOT_PHASES)

    def snapshot_progress(phase: str, fraction: float) -> None:
        index = _SNAPSHOT_PHASES.index(phase) if phase in _SNAPSHOT_PHASES else 0
        progress("snapshot", int(low + step * (index + min(max(fraction, 0.0), 1.0))))

    progress("snapshot", low)
    snapshot = await asyncio.to_thread(snapshot_from_ifc, model, snapshot_progress)
    del model  # IfcOpenShell's copy of the file can be large
    progress("apply", high)
    async with sessions() as session:
        applied = await SqlGraphStore(session).apply_snapshot(snapshot, source=source)
        result = import_report(snapshot, applied)
        if before_commit is not None:
            await before_commit(session, result)
        await session.commit()
    progress("done", 100)
    return result


def job_json(job: TwinImport) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "source": job.source,
        "filename": job.filename,
        "sizeBytes": job.size_bytes,
        "progress": {"phase": job.phase, "percent": job.percent},
        "report": job.report,
        "error": job.error,
        "createdBy": job.created_by,
        "createdAt": job.created_at,
        "finishedAt": job.finished_at,
    }


async def fail_interrupted(session: AsyncSession) -> list[str]:
    """Mark queued or running jobs whose heartbeat stopped as failed; returns their ids (caller commits)."""
    now = utcnow()
    stale = (TwinImport.status.in_([ImportStatus.queued.value, ImportStatus.running.value])
             & (TwinImport.heartbeat_at < now - STALE_AFTER))
    ids = list(await session.scalars(select(TwinImport.id).where(stale)))
    if ids:
        await session.execute(update(TwinImport).where(TwinImport.id.in_(ids), stale).values(
            status=ImportStatus.failed.value, error=INTERRUPTED, finished_at=now))
    return ids


async def get_job(session: AsyncSession, job_id: str) -> TwinImport | None:
    if await fail_interrupted(session):
        await session.commit()
    return await session.get(TwinImport, job_id)


async def list_jobs(session: AsyncSession, limit: int = 20) -> list[TwinImport]:
    if await fail_interrupted(session):
        await session.commit()
    rows = await session.scalars(select(TwinImport).order_by(TwinImport.created_at.desc(), TwinImport.id)
                                 .limit(limit))
    return list(rows)


@dataclass
class _Progress:
    phase: str = "queued"
    percent: int = 0

    def set(self, phase: str, percent: int) -> None:  # called from the parsing thread: plain assignments
        self.phase, self.percent = phase, percent


class ImportJobs:
    """The import jobs of one API process: uploads land in `upload_dir`, each job runs as an asyncio task."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], upload_dir: Path) -> None:
        self.sessions = sessions
        self.upload_dir = upload_dir
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def new_upload(self) -> tuple[str, Path]:
        """A fresh job id and the path its upload is written to."""
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        job_id = secrets.token_hex(16)
        return job_id, self.upload_dir / f"{job_id}.ifc"

    async def recover(self) -> list[str]:
        """At start: fail the jobs a stopped process left behind and remove their uploads."""
        async with self.sessions() as session:
            ids = await fail_interrupted(session)
            await session.commit()
        for job_id in ids:
            (self.upload_dir / f"{job_id}.ifc").unlink(missing_ok=True)
        if ids:
            log.warning("marked %d interrupted IFC import(s) failed", len(ids))
        return ids

    async def submit(self, session: AsyncSession, job_id: str, path: Path, *, source: str, filename: str,
                     size_bytes: int, created_by: str | None) -> TwinImport:
        """Record the job (in the caller's transaction, committed here) and start it."""
        job = TwinImport(id=job_id, source=source, filename=filename, size_bytes=size_bytes,
                         status=ImportStatus.queued.value, phase="queued", percent=0, created_by=created_by)
        session.add(job)
        await session.commit()
        self._tasks[job_id] = asyncio.create_task(self._run(job_id, path, source), name=f"twin-import-{job_id}")
        return job

    async def wait(self, job_id: str) -> None:
        """Until the job's task ends (tests, the CLI)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop the running jobs (at shutdown): they are marked failed as interrupted."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, job_id: str, path: Path, source: str) -> None:
        progress = _Progress()
        progress.set("parse", 0)
        beat = asyncio.create_task(self._heartbeat(job_id, progress))

        async def succeeded(session: AsyncSession, report: dict[str, Any]) -> None:
            await session.execute(update(TwinImport).where(TwinImport.id == job_id).values(
                status=ImportStatus.succeeded.value, phase="done", percent=100, report=report, error=None,
                heartbeat_at=utcnow(), finished_at=utcnow()))

        try:
            await self._set(job_id, status=ImportStatus.running.value, phase="parse", percent=0)
            await import_file(self.sessions, path, source, progress.set, before_commit=succeeded)
        except (IfcError, SnapshotError) as exc:
            await self._finish_failed(job_id, progress, str(exc))
        except asyncio.CancelledError:
            await asyncio.shield(self._finish_failed(job_id, progress, INTERRUPTED))
            raise
        except Exception:
            log.exception("IFC import %s failed", job_id)
            await self._finish_failed(job_id, progress, "the import failed on an internal error (see the server log)")
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await asyncio.to_thread(path.unlink, missing_ok=True)
            self._tasks.pop(job_id, None)

    async def _finish_failed(self, job_id: str, progress: _Progress, message: str) -> None:
        try:
            await self._set(job_id, status=ImportStatus.failed.value, phase=progress.phase, percent=progress.percent,
                            error=message, finished_at=utcnow())
        except Exception:  # the database is gone too: the heartbeat check will mark it later
            log.exception("could not record the failure of IFC import %s", job_id)

    async def _set(self, job_id: str, **values: Any) -> None:
        async with self.sessions() as session:
            await session.execute(update(TwinImport).where(TwinImport.id == job_id).values(
                heartbeat_at=utcnow(), **values))
            await session.commit()

    async def _heartbeat(self, job_id: str, progress: _Progress) -> None:
        """Persist the progress (when it changed, at least every HEARTBEAT_SECONDS) while the job runs."""
        written: tuple[str, int] | None = None
        last = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            now = (progress.phase, progress.percent)
            if now == written and loop.time() - last < HEARTBEAT_SECONDS:
                continue
            try:
                async with self.sessions() as session:
                    await session.execute(update(TwinImport).where(
                        TwinImport.id == job_id, TwinImport.status == ImportStatus.running.value).values(
                        phase=now[0], percent=now[1], heartbeat_at=utcnow()))
                    await session.commit()
            except Exception:  # e.g. SQLite busy while the import's own transaction writes; try again later
                log.debug("heartbeat of IFC import %s not written", job_id, exc_info=True)
                continue
            written, last = now, loop.time()
