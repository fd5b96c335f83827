"""A real Prometheus server (Debian package `prometheus`) of the test's own: own port, own TSDB folder, a scrape
interval of a second. Used by the exporter's tests and by billing's usage tests, which query what it scraped."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from iotistic.broker.testing import free_port


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError("prometheus is not installed (apt-get install prometheus; scripts/test.sh does)")
    return found


class PrivatePrometheus:
    def __init__(self, targets: list[str], *, bearer_token: str | None = None, interval: str = "1s",
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="iotistic-prometheus-"))
        scrape: dict[str, Any] = {"job_name": "iotistic-exporter", "static_configs": [{"targets": targets}]}
        if bearer_token is not None:
            scrape["authorization"] = {"type": "Bearer", "credentials": bearer_token}
        config = {"global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
                  "scrape_configs": [scrape]}
        self.config_file = self.dir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_file = self.dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrivatePrometheus:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [prometheus_binary(), f"--config.file={self.config_file}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.close()
        raise TimeoutError(f"prometheus not ready within {timeout} s: {self.log_tail()}")

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            r = await client.get("/api/v1/query", params={"query": promql})
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def targets(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            r = await client.get("/api/v1/targets")
        r.raise_for_status()
        active: list[dict[str, Any]] = r.json()["data"]["activeTargets"]
        return active

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 30.0) -> Any:
    """Poll an async check until it returns something other than False or None (Prometheus scrapes once a second,
    and its first scrape of a new target comes after about 5 s: target updates are batched that long)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if (result is not None and result is not False) or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(0.25)


async def value_of(prometheus: PrivatePrometheus, promql: str) -> float | None:
    result = await prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None
