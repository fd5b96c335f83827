"""What the deployer raises when the cluster does not end up as asked. Messages are safe to store and show: they
never hold the licence or another secret (the queue keeps them as the job's `last_error`)."""

from __future__ import annotations


class DeployError(RuntimeError):
    """The cluster refused or did not reach the asked state; the job may succeed when retried."""


class HelmError(DeployError):
    """`helm` exited non-zero or ran out of time. `stderr` is helm's own message, secrets removed."""

    def __init__(self, action: str, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(f"helm {action}: {message}" + (f": {stderr}" if stderr else ""))
        self.action = action
        self.returncode = returncode
        self.stderr = stderr


class NamespaceError(DeployError):
    """The customer's namespace could not be created, is not ours, or did not go away in time."""
