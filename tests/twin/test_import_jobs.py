"""IFC import jobs through the API, on SQLite and PostgreSQL: upload, poll, report; re-import; bad files."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from iotistic.cloud.app import create_app
from iotistic.cloud.models import Device, Role
from iotistic.twin.models import TwinEdge, TwinImport, TwinNode
from iotistic.twin.store import SqlGraphStore
from tests.conftest import Api, LicenseKeys, make_settings
from tests.twin.ifc_files import changed_campus, write_campus

IMPORTS = "/api/v1/twin/imports"


@pytest.fixture
def campus(tmp_path: Path) -> Path:
    return write_campus(tmp_path / "campus.ifc", "IFC4")


@pytest.fixture
async def admin(api: Api) -> dict[str, str]:
    return await api.headers_for(Role.admin)


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _leftovers(app: Any) -> list[Path]:
    """Files left in the app's upload directory."""
    return list((Path(app.state.ctx.settings.data_dir) / "twin-uploads").iterdir())


async def upload(client: httpx.AsyncClient, headers: dict[str, str], data: bytes, filename: str = "campus.ifc",
                 **fields: str) -> httpx.Response:
    return await client.post(IMPORTS, headers=headers, files={"file": (filename, data, "application/octet-stream")},
                             data=fields)


async def wait_done(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    seen = set()
    for _ in range(1200):
        r = await client.get(f"{IMPORTS}/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        seen.add(job["status"])
        if job["status"] in ("succeeded", "failed"):
            assert seen <= {"queued", "running", job["status"]}
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def import_ok(client: httpx.AsyncClient, headers: dict[str, str], path: Path, **fields: str) -> dict[str, Any]:
    r = await upload(client, headers, _read(path), **fields)
    assert r.status_code == 202, r.text
    job = await wait_done(client, headers, r.json()["id"])
    assert job["status"] == "succeeded", job
    return job


async def graph_state(app: Any) -> tuple[dict[str, tuple[str, str]], int]:
    """({GlobalId: (kind, name)} of imported nodes, number of edges)."""
    async with app.state.ctx.sessions() as session:
        nodes = {n.global_id: (n.kind, n.name) for n in await session.scalars(
            select(TwinNode).where(TwinNode.global_id.is_not(None)))}
        edges = await session.scalar(select(func.count()).select_from(TwinEdge))
    return nodes, int(edges or 0)


async def test_upload_poll_and_report(client: httpx.AsyncClient, app: Any, admin: dict[str, str],
                                      campus: Path) -> None:
    r = await upload(client, admin, _read(campus))
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"{IMPORTS}/{job['id']}"
    assert job["status"] in ("queued", "running") and job["source"] == "campus.ifc"
    assert job["sizeBytes"] == len(_read(campus)) and job["report"] is None and job["error"] is None

    done = await wait_done(client, admin, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == {"phase": "done", "percent": 100}
    report = done["report"]
    counts = {"Project": 1, "Site": 2, "Building": 3, "Storey": 4, "Space": 5, "Element": 5, "Zone": 1}
    assert report["schema"] == "IFC4" and report["counts"] == counts and report["created"] == counts
    assert report["nodes"] == 21 and report["edges"] == report["edgesCreated"] == 22
    assert report["updated"] == {} and report["deleted"] == {} and report["lostMappings"] == []
    assert len(report["warnings"]) == 1 and "LOOSE" in report["warnings"][0]
    assert done["createdBy"].startswith("admin-") and done["finishedAt"] is not None

    nodes, edges = await graph_state(app)
    assert len(nodes) == 21 and edges == 22
    assert sorted(name for kind, name in nodes.values() if kind == "Space") == [
        "A1-01", "A1-02", "A2-01", "B1-01", "C1-01"]

    listed = (await client.get(IMPORTS, headers=admin)).json()
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["status"] == "succeeded"
    # The upload is gone from the data dir once the job is over.
    assert _leftovers(app) == []


async def test_reimport_is_idempotent_and_a_changed_file_updates_in_place(
        client: httpx.AsyncClient, app: Any, admin: dict[str, str], campus: Path, tmp_path: Path) -> None:
    first = await import_ok(client, admin, campus)
    before = await graph_state(app)

    again = (await import_ok(client, admin, campus))["report"]
    assert (again["created"], again["updated"], again["deleted"]) == ({}, {}, {})
    assert (again["edgesCreated"], again["edgesDeleted"], again["lostMappings"]) == (0, 0, [])
    assert await graph_state(app) == before

    # A device placed in space B1-01, which the next version of the file removes.
    async with app.state.ctx.sessions() as session:
        device = Device(uuid=uuid.uuid4().hex, name="boiler-probe", device_type="sensor-box")
        session.add(device)
        await session.flush()
        b101 = next(gid for gid, (_, name) in before[0].items() if name == "B1-01")
        a101 = next(gid for gid, (_, name) in before[0].items() if name == "A1-01")
        await SqlGraphStore(session).map_device(device.uuid, b101)
        other = Device(uuid=uuid.uuid4().hex, name="desk-probe", device_type="sensor-box")
        session.add(other)
        await session.flush()
        await SqlGraphStore(session).map_device(other.uuid, a101)
        await session.commit()

    changed = changed_campus(campus, tmp_path / "campus-v2.ifc")
    report = (await import_ok(client, admin, changed, source=first["source"]))["report"]
    assert report["created"] == {}
    assert report["updated"] == {"Space": 1}
    assert report["deleted"] == {"Space": 1, "Element": 2}
    assert report["lostMappings"] == [{"device": device.uuid, "globalId": b101}]
    nodes, _ = await graph_state(app)
    assert {name for _, name in nodes.values()} >= {"A1-02 Lab", "A1-01"}
    assert not {"A1-02", "B1-01", "AL-1", "CO2-1"} & {name for _, name in nodes.values()}
    async with app.state.ctx.sessions() as session:  # the mapping into a space that stayed survives
        inside = await SqlGraphStore(session).devices_in(a101)
    assert [d.uuid for d in inside] == [other.uuid]


async def test_bad_files_are_refused_and_the_graph_stays(client: httpx.AsyncClient, app: Any,
                                                         admin: dict[str, str], campus: Path) -> None:
    await import_ok(client, admin, campus)
    before = await graph_state(app)
    good = _read(campus)

    for data, message in ((b"not a building at all\n", "not an IFC file"),
                          (b"PK\x03\x04" + bytes(64), "not an IFC file"),
                          (good[: len(good) // 2], "truncated or corrupt")):
        r = await upload(client, admin, data)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_ifc" and message in r.json()["message"]
    r = await upload(client, admin, b"")
    assert r.status_code == 422 and r.json() == {"error": "validation_error", "message": "the file is empty"}
    r = await client.post(IMPORTS, headers=admin, files={"other": ("x.ifc", good)})
    assert r.status_code == 422 and "no file" in r.json()["message"]
    r = await client.post(IMPORTS, headers={**admin, "Content-Type": "application/octet-stream"}, content=good)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = await client.post(IMPORTS, headers={**admin, "Content-Type": "multipart/form-data; boundary=xyz"},
                          content=b"--xyz\r\nthis is not multipart")
    assert r.status_code in (400, 422), r.text

    # What only parsing finds: a job that fails with a clear message.
    other_schema = good.replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC4X1'))")
    garbled = b"ISO-10303-21;\nHEADER;\nthis is no header at all\nENDSEC;\nEND-ISO-10303-21;\n"
    for data, message in ((other_schema, "unsupported IFC schema"), (garbled, "the IFC file is corrupt")):
        r = await upload(client, admin, data, source="campus.ifc")
        assert r.status_code == 202, r.text
        job = await wait_done(client, admin, r.json()["id"])
        assert job["status"] == "failed" and message in job["error"] and job["report"] is None

    assert await graph_state(app) == before
    statuses = [j["status"] for j in (await client.get(IMPORTS, headers=admin)).json()]
    assert sorted(statuses) == ["failed", "failed", "succeeded"]  # refused uploads made no job
    assert _leftovers(app) == []


async def test_imports_are_for_admins(client: httpx.AsyncClient, api: Api, campus: Path) -> None:
    data = _read(campus)
    r = await upload(client, {}, data)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert (await client.get(IMPORTS)).status_code == 401
    for role in (Role.viewer, Role.operator):
        headers = await api.headers_for(role)
        r = await upload(client, headers, data)
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert (await client.get(IMPORTS, headers=headers)).status_code == 403
    owner = await api.headers_for(Role.owner)
    assert (await client.get(f"{IMPORTS}/{'0' * 32}", headers=owner)).status_code == 404
    assert (await client.get(f"{IMPORTS}/not-an-id", headers=owner)).status_code == 404
    assert (await client.get(IMPORTS, headers=owner)).json() == []


async def test_an_interrupted_job_is_marked_failed_at_start(app: Any, db_url: str, tmp_path: Path,
                                                            license_keys: LicenseKeys) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    async with app.state.ctx.sessions() as session:
        session.add(TwinImport(id="a" * 32, source="old.ifc", filename="old.ifc", size_bytes=10, status="running",
                               phase="apply", percent=70, created_at=long_ago, heartbeat_at=long_ago))
        session.add(TwinImport(id="b" * 32, source="done.ifc", filename="done.ifc", size_bytes=10,
                               status="succeeded", phase="done", percent=100, created_at=long_ago,
                               heartbeat_at=long_ago, report={"nodes": 0}))
        await session.commit()
    restarted = create_app(make_settings(db_url, tmp_path / "second", license_keys))
    async with restarted.router.lifespan_context(restarted):
        async with restarted.state.ctx.sessions() as session:
            jobs = {j.id: j for j in await session.scalars(select(TwinImport))}
    assert jobs["a" * 32].status == "failed" and "interrupted" in (jobs["a" * 32].error or "")
    assert jobs["a" * 32].finished_at is not None
    assert jobs["b" * 32].status == "succeeded" and jobs["b" * 32].report == {"nodes": 0}


# Size limit --------------------------------------------------------------------------------------------------

@pytest.fixture
async def limited_client(db_url: str, tmp_path: Path, license_keys: LicenseKeys,
                         app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A second app on the same database, started with TWIN_MAX_UPLOAD_MB=1."""
    limited = create_app(make_settings(db_url, tmp_path / "limited", license_keys, TWIN_MAX_UPLOAD_MB=1))
    async with limited.router.lifespan_context(limited):
        transport = httpx.ASGITransport(app=limited, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, limited


async def test_too_large_uploads_get_413_while_streaming(limited_client: tuple[httpx.AsyncClient, Any],
                                                         api: Api, campus: Path) -> None:
    client, limited = limited_client
    headers = await api.headers_for(Role.admin)
    big = _read(campus) + b"/* padding */" * 100_000  # ~1.3 MB
    r = await upload(client, headers, big)  # with a Content-Length: refused before the body is read
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large" and "1 MB" in r.json()["message"]

    boundary = "twin-test-boundary"
    sent = 0

    async def body() -> AsyncIterator[bytes]:  # chunked, no Content-Length: refused once past the limit
        nonlocal sent
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.ifc\"\r\n"
               f"Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(40):  # 40 x 64 KiB = 2.5 MB
            sent += 1
            yield b"x" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = await client.post(IMPORTS, headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                          content=body())
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert _leftovers(limited) == []  # the partial file is removed
    r = await upload(client, headers, _read(campus))  # under the limit: fine
    assert r.status_code == 202, r.text
    assert (await wait_done(client, headers, r.json()["id"]))["status"] == "succeeded"
