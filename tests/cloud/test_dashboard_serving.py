"""The cloud API serves the dashboard's build at `/` (iotistic.cloud.dashboard) without touching the API's routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import iotistic
from iotistic.cloud import dashboard
from tests.cloud.test_auth import assert_error

INDEX = '<!doctype html><html><body><div id="root"></div><script type="module" src="/assets/index-3f2a.js"></script>'


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url  # serving files does not depend on the database backend


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-3f2a.js").write_text("console.log('dashboard')")
    (root / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("not for the web")
    return root


@pytest.fixture
def settings_env(dist: Path) -> dict[str, Any]:
    return {"DASHBOARD_DIR": str(dist)}


def assert_index(r: Any) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == INDEX
    assert r.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


async def test_index_and_client_routes_get_index_html_revalidated_on_every_load(client):
    for path in ("/", "/index.html", "/devices", "/devices/0123abcd", "/setup", "/twin/nodes/2O2Fr$t4X7Zf8NOew3FLOH"):
        assert_index(await client.get(path))
    head = await client.head("/fleets")
    assert head.status_code == 200 and head.headers["cache-control"] == "no-cache"


async def test_hashed_assets_are_cached_for_a_year_other_files_revalidated(client):
    r = await client.get("/assets/index-3f2a.js")
    assert r.status_code == 200 and r.text == "console.log('dashboard')"
    assert "javascript" in r.headers["content-type"]
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["x-content-type-options"] == "nosniff"
    etag = r.headers["etag"]
    assert (await client.get("/assets/index-3f2a.js", headers={"If-None-Match": etag})).status_code == 304

    icon = await client.get("/favicon.svg")
    assert icon.status_code == 200 and icon.headers["cache-control"] == "no-cache"


async def test_missing_files_are_404_not_the_app(client):
    for path in ("/assets/gone-1234.js", "/assets/page", "/robots.txt", "/assets/../../secret.txt",
                 "/%2e%2e/secret.txt"):
        r = await client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "not for the web" not in r.text


async def test_the_api_keeps_its_own_answers(client):
    for path in ("/api", "/api/v1/nope", "/api/v1/devices/x/y/z", "/ws/x", "/metrics/x", "/docs/x",
                 "/openapi.json/x", "/health/x", "/ready/x", "/redoc/x"):
        assert_error(await client.get(path), 404, "not_found")
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Iotistic cloud API"
    assert "swagger" in (await client.get("/docs")).text.lower()
    assert_error(await client.get("/api/v1/auth/me"), 401)
    assert_error(await client.delete("/api/v1/auth/me"), 405)  # a known path keeps its 405
    assert_error(await client.post("/devices", json={}), 404)  # pages are read, never posted to


async def test_without_a_build_pages_explain_how_to_build_it_and_a_later_build_is_served(tmp_path, app, client):
    app.router.default.directory = tmp_path / "empty"  # as if DASHBOARD_DIR named a directory not built yet
    app.router.default._files = None
    for path in ("/", "/devices/abc"):
        r = await client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "npm run build" in r.text and "DASHBOARD_DIR" in r.text
        assert str(tmp_path) not in r.text  # no server paths for anonymous visitors
    assert (await client.get("/assets/index-3f2a.js")).status_code == 404
    assert_error(await client.get("/api/v1/nope"), 404, "not_found")

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "index.html").write_text(INDEX)
    assert_index(await client.get("/"))  # no restart needed


def test_the_default_build_is_the_bundled_one_else_this_checkouts_dashboard_dist(tmp_path, monkeypatch):
    checkout = Path(iotistic.__file__).resolve().parents[2]
    monkeypatch.setattr(dashboard, "BUNDLED_DIR", tmp_path)  # a wheel without a bundled build
    assert dashboard.default_dashboard_dir() == checkout / "dashboard" / "dist"
    (tmp_path / "index.html").write_text(INDEX)  # a wheel with one
    assert dashboard.default_dashboard_dir() == tmp_path
