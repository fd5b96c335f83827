"""First run from the command line: `iotistic up` prints the one-time setup link on a fresh instance, and
`iotistic admin setup-link` prints a fresh one (run for real, as subprocesses)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from tests.test_cli import PASSWORD, RunningUp, clean_env, free_port, one_error_line, run

LINK = re.compile(r"(https?://\S+)/setup#token=(st_[A-Za-z0-9_-]{43,})")


def read_link(up: RunningUp) -> tuple[str, str, str]:
    """The setup link `up` prints before it starts serving: (base URL, token, everything printed up to it)."""
    assert up.proc.stdout is not None
    seen = []
    for line in up.proc.stdout:  # ends if the process exits
        seen.append(line)
        found = LINK.search(line)
        if found:
            return found.group(1), found.group(2), "".join(seen)
        if "Press Ctrl+C" in line:
            break
    raise AssertionError(f"no setup link in: {''.join(seen)}")


async def _setup(data_dir: Path, token: str, email: str) -> httpx.Response:
    from iotistic.cloud.app import create_app
    from iotistic.core.settings import load_cloud_settings

    settings = load_cloud_settings(IOTISTIC_DATA_DIR=str(data_dir),
                                   DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'iotistic.db'}")
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post("/api/v1/setup", json={"token": token, "email": email, "password": PASSWORD})
    finally:
        await application.state.ctx.engine.dispose()


def test_up_prints_a_one_time_link_that_creates_the_first_owner(tmp_path):
    port = free_port()
    up = RunningUp(tmp_path, port)
    try:
        base, token, printed = read_link(up)
        up.wait_healthy()
        assert base == f"http://127.0.0.1:{port}"
        assert f"Dashboard: {base}/" in printed
        page = httpx.get(f"{base}/setup", timeout=5)  # the dashboard's page (or how to build it)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert httpx.get(f"{base}/api/v1/setup", timeout=5).json() == {"needed": True}
        r = httpx.post(f"{base}/api/v1/setup", timeout=10,
                       json={"token": token, "email": "owner@example.com", "password": PASSWORD})
        assert r.status_code == 201, r.text
        me = httpx.get(f"{base}/api/v1/auth/me", timeout=5,
                       headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert me.json()["role"] == "owner"
        assert httpx.get(f"{base}/api/v1/setup", timeout=5).json() == {"needed": False}
    finally:
        rest = up.stop()
    assert "admin create --email" in rest  # the command-line way is still offered

    # Set up: no more links; `admin create` still adds users.
    refused = run("admin", "setup-link", cwd=tmp_path)
    assert refused.returncode == 1 and "log in" in one_error_line(refused)
    assert run("admin", "create", "--email", "second@example.com", "--password", PASSWORD,
               "--role", "viewer", cwd=tmp_path).returncode == 0


def test_admin_setup_link_prints_a_fresh_link_and_the_old_one_stops_working(tmp_path):
    data = tmp_path / "data"
    env = clean_env(IOTISTIC_DATA_DIR=str(data))
    assert run("db", "upgrade", env=env).returncode == 0

    first = run("admin", "setup-link", "--url", "https://iot.example.com/", env=env)
    assert first.returncode == 0, first.stderr
    found = LINK.fullmatch(first.stdout.strip())
    assert found and found.group(1) == "https://iot.example.com"
    assert "Valid once" in first.stderr and found.group(2) not in first.stderr

    second = run("admin", "setup-link", env=clean_env(IOTISTIC_DATA_DIR=str(data), PUBLIC_URL="https://iot.test"))
    assert second.returncode == 0, second.stderr
    newer = LINK.fullmatch(second.stdout.strip())
    assert newer and newer.group(1) == "https://iot.test" and newer.group(2) != found.group(2)

    assert asyncio.run(_setup(data, found.group(2), "a@example.com")).status_code == 403
    assert asyncio.run(_setup(data, newer.group(2), "a@example.com")).status_code == 201

    bad = run("admin", "setup-link", "--url", "iot.example.com", env=env)
    assert bad.returncode == 2 and "http" in one_error_line(bad)
