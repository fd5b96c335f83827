"""The agent's tests against a real Docker engine use the `docker_engine` and `engine` fixtures of
tests/docker_engine.py (loaded for the whole suite by tests/conftest.py, so tests/e2e shares the same engine).

The names below stay importable from here for the test modules that use them.
"""

from tests.docker_engine import MANAGED_LABEL, TEST_LABEL, DockerEngine, free_port, unavailable

__all__ = ["MANAGED_LABEL", "TEST_LABEL", "DockerEngine", "free_port", "unavailable"]
