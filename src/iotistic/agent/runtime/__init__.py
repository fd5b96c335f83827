"""Container runtimes behind one interface: Docker today, Kubernetes (K3s) later.

Import `DockerRuntime` from `iotistic.agent.runtime.docker` (it needs the `docker` package); this package itself
imports only the interface, so code written against `Runtime` does not pull in a client library.
"""

from iotistic.agent.runtime.base import (
    ContainerDetails,
    ContainerNotFound,
    LogLine,
    LogStream,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
    StepFailed,
)

__all__ = [
    "ContainerDetails",
    "ContainerNotFound",
    "LogLine",
    "LogStream",
    "Runtime",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "StepFailed",
]
