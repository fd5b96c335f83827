"""Hatch build hook: ship the dashboard's build inside the wheel as iotistic/cloud/dashboard_dist, where the cloud
API looks for it first (iotistic.cloud.dashboard). Build it before the wheel: `cd dashboard && npm ci && npm run
build`. Editable installs skip it: a source checkout serves dashboard/dist directly, so a rebuild shows at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class DashboardBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        dist = Path(self.root) / "dashboard" / "dist"
        if (dist / "index.html").is_file():
            build_data["force_include"][str(dist)] = "iotistic/cloud/dashboard_dist"
        elif os.environ.get("IOTISTIC_REQUIRE_DASHBOARD", "").lower() in ("1", "true", "yes"):
            raise RuntimeError(f"no dashboard build at {dist}: run `npm ci && npm run build` in dashboard/ first")
        else:
            self.app.display_warning(f"no dashboard build at {dist}: the wheel serves a how-to-build page at /")
