"""The `helm` binary, run as a subprocess with an argument list (never a shell string).

Values reach helm only as a file written 0600 in a private temporary directory that is deleted as soon as helm
exits: the licence is in them and must not appear in a process listing (`--set`) or stay on disk. Every call has a
deadline; a helm that outlives it is killed. Errors carry helm's stderr with secrets removed.

Applies use server-side apply (`--server-side=true`): the API server merges and validates every object, and
`--force-conflicts` makes billing, the owner of the instance, win over hand edits of the fields it sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from iotistic.billing.deploy.errors import HelmError
from iotistic.billing.deploy.values import values_yaml

# What must never reach a log or the database even when helm echoes it: JWTs (licences, tokens) and PEM keys.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL)
REDACTED = "[redacted]"
STDERR_MAX = 2000  # the end of helm's output holds the error; the rest is progress noise


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _PEM_PRIVATE.sub(REDACTED, text)
    return _JWT.sub(REDACTED, text)


@dataclass(frozen=True)
class Revision:
    number: int
    status: str  # deployed, failed, superseded, pending-install, pending-upgrade, pending-rollback, ...
    updated: datetime


@dataclass(frozen=True)
class HelmResult:
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Helm:
    """How to run helm against one cluster. `wait` waits for the objects to become ready (helm's watcher)."""

    binary: str = "helm"
    kubeconfig: Path | None = None
    kube_context: str | None = None
    timeout_s: float = 300.0
    wait: bool = False
    history_max: int = 5
    # Seconds given to helm beyond its own --timeout to report a timeout itself before it is killed.
    kill_grace_s: float = 15.0

    @property
    def deadline_s(self) -> float:
        """No helm call of ours runs longer than this."""
        return self.timeout_s + self.kill_grace_s

    @property
    def _timeout(self) -> str:
        return f"{max(1, round(self.timeout_s))}s"

    def _cluster_args(self) -> list[str]:
        args: list[str] = []
        if self.kubeconfig is not None:
            args += ["--kubeconfig", str(self.kubeconfig)]
        if self.kube_context:
            args += ["--kube-context", self.kube_context]
        return args

    async def run(self, action: str, args: Sequence[str], *, secrets: Iterable[str] = ()) -> HelmResult:
        """`helm <args>`; HelmError (stderr redacted) on a non-zero exit, a missing binary or the deadline."""
        secrets = tuple(secrets)
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                *self._cluster_args(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise HelmError(action, f"cannot run {self.binary!r} ({exc.strerror or exc})") from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.deadline_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise HelmError(action, f"did not finish within {self.deadline_s:.0f} s; killed") from None
        out = stdout.decode(errors="replace")
        err = redact(stderr.decode(errors="replace").strip(), secrets)
        if process.returncode != 0:
            raise HelmError(action, f"exit status {process.returncode}", returncode=process.returncode,
                            stderr=err[-STDERR_MAX:])
        return HelmResult(out, err)

    async def upgrade_install(
        self, release: str, chart: Path, namespace: str, values: Mapping[str, Any], *, secrets: Iterable[str] = ()
    ) -> Revision:
        """`helm upgrade --install` with exactly these values (none kept from the previous revision).

        Every call is a new revision, also when nothing changed: the objects are re-applied (which repairs hand
        deletions) and those that did not change keep their resourceVersion. Only the revision is returned: helm's
        full output holds the values and the manifest, so the licence, and is dropped here."""
        with _values_file(values) as path:
            args = [
                "upgrade", "--install", release, str(chart),
                "--namespace", namespace,
                "--values", str(path),
                "--reset-values",
                "--server-side=true", "--force-conflicts",
                "--history-max", str(self.history_max),
                "--timeout", self._timeout,
                "--output", "json",
            ]
            if self.wait:
                args.append("--wait=watcher")
            result = await self.run("upgrade --install", args, secrets=secrets)
        try:
            described = json.loads(result.stdout)
            info = described["info"]
            updated = datetime.fromisoformat(info["last_deployed"])
            return Revision(int(described["version"]), str(info["status"]), updated)
        except (ValueError, KeyError, TypeError):
            raise HelmError("upgrade --install", "unreadable output") from None

    async def uninstall(self, release: str, namespace: str) -> bool:
        """`helm uninstall`; False when there was no such release (already removed)."""
        args = ["uninstall", release, "--namespace", namespace, "--timeout", self._timeout]
        if self.wait:
            args.append("--wait=watcher")
        try:
            await self.run("uninstall", args)
        except HelmError as exc:
            if exc.returncode is not None and "release: not found" in exc.stderr:
                return False
            raise
        return True

    async def latest(self, release: str, namespace: str) -> Revision | None:
        """The newest revision of the release (`helm history --max 1`), None when it is not installed."""
        try:
            result = await self.run(
                "history", ["history", release, "--namespace", namespace, "--max", "1", "--output", "json"]
            )
        except HelmError as exc:
            if exc.returncode is not None and "release: not found" in exc.stderr:
                return None
            raise
        try:
            newest = json.loads(result.stdout)[-1]
            return Revision(int(newest["revision"]), str(newest["status"]), datetime.fromisoformat(newest["updated"]))
        except (ValueError, KeyError, IndexError, TypeError):
            raise HelmError("history", "unreadable output") from None

    async def rollback(self, release: str, namespace: str) -> None:
        """`helm rollback` to the revision before the newest one."""
        args = ["rollback", release, "--namespace", namespace, "--timeout", self._timeout]
        if self.wait:
            args.append("--wait=watcher")
        await self.run("rollback", args)


@contextlib.contextmanager
def _values_file(values: Mapping[str, Any]) -> Any:
    """A values file only this process can read, gone when helm is done (also after errors)."""
    directory = tempfile.mkdtemp(prefix="iotistic-helm-")  # mode 0700
    try:
        path = Path(directory) / "values.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(values_yaml(values))
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
