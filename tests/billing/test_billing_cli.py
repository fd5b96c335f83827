"""`iotistic billing ...` run as an operator would: subprocesses with a clean environment."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import httpx

from tests.test_cli import CLI, clean_env, free_port, one_error_line, run

_BILLING_VARS = ("BILLING_", "STRIPE_", "PROMETHEUS_URL", "HELM_BIN", "KUBECONFIG")


def billing_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith(_BILLING_VARS)}
    env.update(extra)
    return env


def test_keygen_migrate_and_serve_without_worker(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    result = run("billing", "keygen", "--out", str(keys), env=billing_env())
    assert result.returncode == 0, result.stderr
    private = keys / "license-private.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    again = run("billing", "keygen", "--out", str(keys), env=billing_env())
    assert again.returncode == 1 and "--force" in one_error_line(again)

    env = billing_env(BILLING_DATA_DIR=str(tmp_path / "data"), BILLING_PRIVATE_KEY_FILE=str(private),
                      BILLING_JWT_SECRET="s" * 40, ARGON2_TIME_COST="1", ARGON2_MEMORY_KIB="64")
    port = free_port()
    not_migrated = run("billing", "serve", "--no-worker", "--port", str(port), env=env)
    assert not_migrated.returncode == 1
    assert "iotistic billing migrate" in one_error_line(not_migrated)

    migrated = run("billing", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "billing.db").exists()

    server = subprocess.Popen([*CLI, "billing", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError("billing serve did not answer")
        key = httpx.get(f"{base}/api/license/public-key").json()["public_key"]
        assert key == (keys / "license-public.pem").read_text()
        r = httpx.post(f"{base}/api/customers/signup", json={
            "email": "cli@example.com", "password": "correct-horse-battery", "company": "Acme", "plan": "starter"})
        assert r.status_code == 201, r.text
        assert httpx.get(f"{base}/api/operator/customers").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert "Traceback" not in (server.stderr.read() if server.stderr else "")


def test_serve_refuses_to_start_without_a_usable_key(tmp_path: Path) -> None:
    env = billing_env(BILLING_DATA_DIR=str(tmp_path))
    result = run("billing", "serve", "--no-worker", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    assert "BILLING_PRIVATE_KEY" in one_error_line(result)

    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    result = run("billing", "serve", "--no-worker", env={**env, "BILLING_PRIVATE_KEY_FILE": str(not_a_key)})
    assert result.returncode == 2
    assert "not an unencrypted PEM private key" in one_error_line(result)

    result = run("billing", "migrate", env={**env, "BILLING_DATABASE_URL": "mysql://x/y"})
    assert result.returncode == 2
    assert "BILLING_DATABASE_URL" in one_error_line(result)


def test_migrate_reports_an_unreachable_database(tmp_path: Path) -> None:
    env = billing_env(BILLING_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/billing")
    result = run("billing", "migrate", env=env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("error: migrating postgresql+asyncpg://nobody@127.0.0.1")
