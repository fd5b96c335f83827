"""Update locks: a service holds off its own restart or update by creating a lock file.

Each service gets a host folder `<lock_root>/<appId>/<serviceName>/`, which the runtime mounts into its
container at `/tmp/iotistic`. While `/tmp/iotistic/updates.lock` exists (seen from the host as
`<lock_root>/<appId>/<serviceName>/updates.lock`), the planner defers every step that would stop or remove the
service, unless the apply is forced. The folder outlives the container on purpose: a lock taken by the old
container of a service still protects it while the agent decides about the new one.

The presence of the file is the whole protocol (as in balena's supervisor): no flock, so a service written in any
language, or a shell script, can take and release the lock with `touch` and `rm`.
"""

from __future__ import annotations

from pathlib import Path

from iotistic.agent.state import ServiceKey

#: Where the lock folder appears inside every container.
LOCK_MOUNT_PATH = "/tmp/iotistic"  # noqa: S108 - a path inside the container, not a host temp file
LOCK_FILE_NAME = "updates.lock"


class UpdateLocks:
    """The lock folders under one root; shared by the runtime (which creates and mounts them) and the executor."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def service_dir(self, key: ServiceKey) -> Path:
        return self.root / str(key.app_id) / key.service_name

    def ensure_dir(self, key: ServiceKey) -> Path:
        """Create the service's folder (before its container, so Docker does not create it root-owned 0755)."""
        path = self.service_dir(key)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_file(self, key: ServiceKey) -> Path:
        return self.service_dir(key) / LOCK_FILE_NAME

    def is_held(self, key: ServiceKey) -> bool:
        return self.lock_file(key).exists()

    def held(self) -> frozenset[ServiceKey]:
        """Every service whose lock file exists, whether or not it is still in the target (a removed service
        may be holding its lock too)."""
        if not self.root.is_dir():
            return frozenset()
        keys: set[ServiceKey] = set()
        for lock in self.root.glob(f"*/*/{LOCK_FILE_NAME}"):
            app_dir = lock.parent.parent.name
            if app_dir.isdigit():
                keys.add(ServiceKey(int(app_dir), lock.parent.name))
        return frozenset(keys)
