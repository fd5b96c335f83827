"""The digital twin for the API: the graph store on the request's session, its refusals as API errors, and the
audit trail of mapping and edge changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError, conflict, not_found
from iotistic.cloud.services import audit
from iotistic.twin.store import (
    EdgeExists,
    EdgeRow,
    InvalidRequest,
    Mapping,
    NodeRef,
    NotFound,
    SnapshotError,
    SqlGraphStore,
)


def store(session: AsyncSession) -> SqlGraphStore:
    return SqlGraphStore(session)


@contextmanager
def api_errors() -> Iterator[None]:
    """The store's refusals as the API's error bodies: 404, 409 or 422."""
    try:
        yield
    except NotFound as exc:
        raise not_found(exc.what) from None
    except EdgeExists as exc:
        raise conflict(str(exc)) from None
    except (InvalidRequest, SnapshotError) as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


async def map_device(session: AsyncSession, device_uuid: str, target: NodeRef, *, actor: str,
                     ip: str | None) -> Mapping:
    with api_errors():
        mapping = await store(session).map_device(device_uuid, target)
    audit.record(session, actor=actor, action="twin.device_mapped", target_type="device", target_id=device_uuid,
                 details={"node": mapping.target_id, "globalId": mapping.target_global_id}, ip=ip)
    return mapping


async def unmap_device(session: AsyncSession, device_uuid: str, *, actor: str, ip: str | None) -> bool:
    with api_errors():
        had = await store(session).unmap_device(device_uuid)
    if had:
        audit.record(session, actor=actor, action="twin.device_unmapped", target_type="device",
                     target_id=device_uuid, ip=ip)
    return had


async def add_edge(session: AsyncSession, kind: str, source: NodeRef, target: NodeRef,
                   properties: dict[str, Any], *, actor: str, ip: str | None) -> EdgeRow:
    with api_errors():
        edge = await store(session).add_edge(kind, source, target, properties)
    audit.record(session, actor=actor, action="twin.edge_created", target_type="twin_edge", target_id=edge.id,
                 details={"kind": kind, "source": edge.source_id, "target": edge.target_id}, ip=ip)
    return edge


async def delete_edge(session: AsyncSession, edge_id: int, *, actor: str, ip: str | None) -> EdgeRow:
    with api_errors():
        edge = await store(session).delete_edge(edge_id)
    audit.record(session, actor=actor, action="twin.edge_deleted", target_type="twin_edge", target_id=edge_id,
                 details={"kind": edge.kind, "source": edge.source_id, "target": edge.target_id}, ip=ip)
    return edge
