"""Benchmark: the edge agent's idle resident memory, and how fast it converges a 10-service target.

    .venv/bin/python benchmarks/agent_footprint.py                # needs root, dockerd and busybox-static
    .venv/bin/python benchmarks/agent_footprint.py --services 10 --runs 3 --idle-seconds 20

What it does, in one run:
1. starts a private Docker engine (`iotistic.agent.testing.dockerd`: its own dockerd, socket, bridge and data
   folder) and builds the busybox-only test image there (no registry needed);
2. **idle memory**: starts the agent as a subprocess in local mode (`iotistic agent`, then `python -m
   iotistic.agent`, which `iotistic agent` execs into), applies a small target (2 services) through
   its Device API, waits until it is applied and idle, then samples its resident set size (psutil) a few times;
   balena's supervisor idles at about 45 MB, the target here;
3. **convergence**: with an agent running and the image present, POSTs a target of N services (default 10) to
   `/v2/local/target-state` and times until every container runs (as Docker reports it) and until the agent
   reports the target applied; the target is removed between runs;
4. **where the memory goes**: in a fresh interpreter, imports the agent's modules in the order the agent does and
   prints each group's resident-memory increment, then tracemalloc's Python-allocated bytes per package.

Figures depend on the machine (and the Python build); the memory is what a Linux `ps` shows as RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from iotistic.agent.instance import InstanceLock
from iotistic.agent.store import AgentStore
from iotistic.agent.testing.dockerd import (
    TEST_IMAGE,
    DockerdUnavailable,
    PrivateDockerd,
    build_images,
    missing_prerequisite,
)

_SCRIPT = Path(sys.executable).parent / "iotistic"
LAUNCHERS = {
    "iotistic agent": [str(_SCRIPT), "agent"] if _SCRIPT.exists() else [sys.executable, "-m", "iotistic.cli", "agent"],
    "python -m iotistic.agent": [sys.executable, "-m", "iotistic.agent"],
}
MANAGED = "io.iotistic.managed=true"


def target(app_id: int, services: int) -> dict[str, Any]:
    return {"apps": {str(app_id): {"appId": app_id, "appName": f"bench{app_id}", "services": [
        {"serviceId": i + 1, "serviceName": f"s{i + 1}",
         "config": {"image": TEST_IMAGE, "command": ["sh", "-c", f"echo s{i + 1} up; sleep 100000"]}}
        for i in range(services)
    ]}}}


class AgentProcess:
    """`iotistic agent` (or another launcher) in local mode against the private engine, in a temp data folder."""

    def __init__(self, command: list[str], docker_host: str, log_level: str = "WARNING") -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="iotistic-agent-bench-"))
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLOUD_API_ENDPOINT", "PROVISIONING_KEY", "DEVICE_API_HOST")}
        env.update(AGENT_DATA_DIR=str(self.data_dir), DOCKER_HOST=docker_host, DEVICE_API_PORT=str(_free_port()),
                   LOG_LEVEL=log_level)
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "wb")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.api: str | None = None
        self.key: str | None = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        lock = InstanceLock(self.data_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the agent exited ({self.process.returncode}); see {self.log.name}")
            holder = lock.holder()
            if holder and holder.get("api"):
                self.api = f"http://{holder['api']}"
                store = AgentStore(self.data_dir / "agent.db")
                identity = store.identity()
                store.close()
                assert identity is not None
                self.key = identity.local_api_key
                return
            time.sleep(0.1)
        raise RuntimeError(f"the agent's Device API did not come up; see {self.log.name}")

    def client(self) -> httpx.Client:
        assert self.api and self.key
        return httpx.Client(base_url=self.api, headers={"X-API-Key": self.key}, timeout=60)

    def summary(self) -> dict[str, Any]:
        with self.client() as client:
            r = client.get("/v1/device")
            r.raise_for_status()
            return dict(r.json()["agent"])

    def post_target(self, document: dict[str, Any]) -> None:
        with self.client() as client:
            r = client.post("/v2/local/target-state", json=document)
            assert r.status_code == 202, r.text

    def wait_applied(self, version: int, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.summary()
            if s.get("appliedVersion") == version and s.get("status") == "applied" and not s.get("updatePending"):
                return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError(f"target version {version} not applied within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        Path(self.log.name).unlink(missing_ok=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mb(value: float) -> str:
    return f"{value / 2**20:.1f} MB"


def measure_idle(name: str, command: list[str], docker_host: str, api: Any, *, idle_seconds: float,
                 samples: int) -> dict[str, Any]:
    agent = AgentProcess(command, docker_host)
    try:
        agent.wait_ready()
        agent.post_target(target(1, 2))
        agent.wait_applied(1)
        time.sleep(idle_seconds)  # log followers attached, a few reconcile rounds, the periodic malloc trim
        process = psutil.Process(agent.process.pid)
        rss, uss = [], []
        for _ in range(samples):
            info = process.memory_full_info()
            rss.append(info.rss)
            uss.append(info.uss)
            time.sleep(2)
        return {"name": name, "rss": rss, "uss": uss, "threads": process.num_threads(),
                "cpu": process.cpu_times().user + process.cpu_times().system}
    finally:
        agent.stop()
        _remove_managed(api)


def measure_convergence(docker_host: str, api: Any, *, services: int, runs: int) -> list[dict[str, float]]:
    agent = AgentProcess(LAUNCHERS["iotistic agent"], docker_host)
    results = []
    try:
        agent.wait_ready()
        version = 0
        for run in range(runs):
            app_id = 100 + run
            started = time.monotonic()
            agent.post_target(target(app_id, services))
            version += 1
            while True:
                found = api.containers(all=True, filters={"label": f"io.iotistic.app-id={app_id}"})
                states = [c["State"] for c in found]
                if len(states) == services and all(s == "running" for s in states):
                    break
                if time.monotonic() - started > 300:
                    raise RuntimeError("the target did not converge within 300 s")
                time.sleep(0.02)
            all_running = time.monotonic()
            applied = agent.wait_applied(version)
            results.append({"running": all_running - started, "applied": applied - started})
            removed_at = time.monotonic()
            agent.post_target({"apps": {}})
            version += 1
            agent.wait_applied(version)
            results[-1]["removed"] = time.monotonic() - removed_at
    finally:
        agent.stop()
        _remove_managed(api)
    return results


def _remove_managed(api: Any) -> None:
    for c in api.containers(all=True, filters={"label": MANAGED}):
        try:
            api.remove_container(c["Id"], force=True, v=True)
        except Exception:  # best effort clean-up
            continue


#: Run in a fresh interpreter: resident memory after each group of the agent's imports, in the agent's order.
IMPORT_GROUPS = [
    ("asyncio, ssl, sqlite3", "import asyncio, ssl, sqlite3"),
    ("pydantic, pydantic-settings (settings)", "import iotistic.agent.settings"),
    ("target state and report schemas", "import iotistic.core.schemas.target_state, iotistic.core.schemas.reports"),
    ("agent core (store, identity, executor, sync)", "import iotistic.agent.main"),
    ("docker SDK, requests, urllib3 (runtime)", "import iotistic.agent.runtime.docker"),
    ("fastapi, starlette (Device API)", "import fastapi"),
    ("Device API routes", "import iotistic.agent.api.app"),
    ("uvicorn (imports click too)", "import uvicorn, uvicorn.server"),
    ("httpx (cloud mode only)", "import httpx"),
    ("psutil (cloud mode metrics)", "import psutil"),
    ("typer, rich (`iotistic` commands only)", "import iotistic.cli"),
]
RSS_PROBE = textwrap.dedent('''
    import json, sys
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    rows = [("interpreter", rss())]
    for name, statement in json.loads(sys.argv[1]):
        exec(statement)
        rows.append((name, rss()))
    print(json.dumps({"rows": rows, "modules": len(sys.modules)}))
''')
TRACEMALLOC_PROBE = textwrap.dedent('''
    import json, sys, tracemalloc
    tracemalloc.start()
    for name, statement in json.loads(sys.argv[1]):
        exec(statement)
    by_package = {}
    for stat in tracemalloc.take_snapshot().statistics("filename"):
        f = stat.traceback[0].filename
        if "site-packages/" in f:
            key = f.split("site-packages/")[1].split("/")[0].removesuffix(".py")
        elif "/src/iotistic/" in f:
            key = "iotistic." + f.split("/src/iotistic/")[1].split("/")[0].removesuffix(".py")
        elif f.startswith("<frozen"):
            key = "code objects and module namespaces (import machinery)"
        else:
            key = "stdlib"
        by_package[key] = by_package.get(key, 0) + stat.size
    print(json.dumps(sorted(by_package.items(), key=lambda kv: -kv[1])[:10]))
''')


def import_breakdown() -> dict[str, Any]:
    env = {**os.environ, "AGENT_DATA_DIR": tempfile.gettempdir()}
    groups = json.dumps(IMPORT_GROUPS)
    rss = subprocess.run([sys.executable, "-c", RSS_PROBE, groups], capture_output=True, text=True, check=True,
                         env=env)
    traced = subprocess.run([sys.executable, "-c", TRACEMALLOC_PROBE, json.dumps(IMPORT_GROUPS[:-3])],
                            capture_output=True, text=True, check=True, env=env)
    result: dict[str, Any] = json.loads(rss.stdout)
    result["packages"] = json.loads(traced.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=10, help="services in the convergence target")
    parser.add_argument("--runs", type=int, default=3, help="convergence runs")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="wait after applying before sampling")
    parser.add_argument("--samples", type=int, default=5, help="RSS samples (2 s apart)")
    args = parser.parse_args()

    reason = missing_prerequisite()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    engine = PrivateDockerd()
    try:
        api = engine.start()
    except DockerdUnavailable as exc:
        print(f"cannot run: {exc}", file=sys.stderr)
        return 2
    try:
        build_images(api)
        version = api.version()
        print(f"engine: private dockerd {version.get('Version')} ({engine.base_url}); image {TEST_IMAGE}")
        print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs, "
              f"{psutil.virtual_memory().total / 2**30:.1f} GB RAM")
        print()
        print(f"idle resident memory (local mode, 2 services applied, {args.idle_seconds:.0f} s idle, "
              f"{args.samples} samples):")
        idle = []
        for name, command in LAUNCHERS.items():
            result = measure_idle(name, command, engine.base_url, api, idle_seconds=args.idle_seconds,
                                  samples=args.samples)
            idle.append(result)
            rss = statistics.median(result["rss"])
            print(f"  {name:26s} RSS {_mb(rss)} (min {_mb(min(result['rss']))}, max {_mb(max(result['rss']))}), "
                  f"USS {_mb(statistics.median(result['uss']))}, {result['threads']} threads, "
                  f"CPU {result['cpu']:.1f} s since start  -> target < 45 MB: "
                  f"{'met' if rss < 45 * 2**20 else 'NOT met'}")
        print()
        print(f"convergence of a {args.services}-service target (images present), {args.runs} run(s):")
        runs = measure_convergence(engine.base_url, api, services=args.services, runs=args.runs)
        for i, r in enumerate(runs, 1):
            print(f"  run {i}: every container running after {r['running']:.2f} s, reported applied after "
                  f"{r['applied']:.2f} s (removal of all {args.services}: {r['removed']:.2f} s)")
        print(f"  median: {statistics.median(r['running'] for r in runs):.2f} s to running, "
              f"{statistics.median(r['applied'] for r in runs):.2f} s to applied")
        print()
        breakdown = import_breakdown()
        print(f"where the memory goes (a fresh interpreter importing what the agent imports; "
              f"{breakdown['modules']} modules in the end):")
        previous = 0
        for name, value in breakdown["rows"]:
            print(f"  {name:48s} +{_mb(value - previous):>9s}  = {_mb(value)}")
            previous = value
        print("  Python-allocated memory by package (tracemalloc; the agent's imports in local mode):")
        for name, size in breakdown["packages"]:
            print(f"    {_mb(size):>9s}  {name}")
    finally:
        _remove_managed(api)
        api.close()
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
