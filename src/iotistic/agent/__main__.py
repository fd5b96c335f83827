"""`python -m iotistic.agent`: run the agent (what `iotistic agent` execs into, without the CLI's libraries).

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 another agent uses the data folder (or it is not writable),
2 invalid configuration (one line on stderr).
"""

from __future__ import annotations

import sys

from iotistic.agent.main import AgentAlreadyRunning, run_agent
from iotistic.agent.settings import load_agent_settings
from iotistic.core.settings import ConfigError


def main() -> int:
    try:
        settings = load_agent_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run_agent(settings)
    except AgentAlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"error: cannot use {settings.data_dir}: {exc.strerror or exc} (set AGENT_DATA_DIR or run as root)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
