"""The Device API application: `create_device_api(core)`, and `device_api_server(core)` to serve it.

Routes (balena-supervisor shapes where they make sense; errors are `{error, message}`):

    GET  /ping                                   open; "OK"
    GET  /v1/healthy                             "OK", or 503 when the container engine does not answer
    GET  /v1/device                              status, update_pending/downloaded/failed, addresses, versions
    POST /v1/update {force}                      204: poll the cloud and apply now
    POST /v1/restart {appId, force}              restart the app's running services
    POST /v1/reboot, /v1/shutdown {force}        202; 423 under an update lock unless forced, 409 not configured
    POST /v1/apps/{appId}/stop|start {force}     hold the app's services stopped / run them again
    GET  /v1/apps/{appId}                        the app's first service: containerId, env, imageId
    POST /v1/regenerate-api-key                  the new key, as text
    POST /v1/provision, GET /v1/provision/status, POST /v1/deprovision, POST /v1/factory-reset {confirm: true}
    GET  /v2/applications/state, /v2/applications/{appId}/state
    POST /v2/applications/{appId}/restart-service|stop-service|start-service {serviceName, force}
    GET  /v2/state/status, /v2/version
    GET|POST /v2/local/target-state              POST only in local mode (409 in cloud mode)
    GET  /v2/local/logs                          NDJSON stream (?serviceName=, ?follow=, ?backlog=, ?limit=)
    GET|PATCH /v2/device/name, /v2/device/tags   GET /v2/device/vpn

Security is in `security.py`: the local API key on every route but `/ping`, and no key in the logs.

Actions that change what runs (stop/start of apps and services) hold the services in their new state
(`Executor.hold`) and run an apply at once; the request waits up to `apply_wait` seconds for it (200), then
answers 202 while the apply carries on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

import iotistic
from iotistic.agent.api import routes_v1, routes_v2
from iotistic.agent.api.contract import AgentCore
from iotistic.agent.api.errors import install_error_handlers
from iotistic.agent.api.security import ApiKeyMiddleware, BodyLimitMiddleware, install_log_redaction

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

DEFAULT_APPLY_WAIT = 60.0


def create_device_api(core: AgentCore, *, apply_wait: float = DEFAULT_APPLY_WAIT) -> FastAPI:
    """The Device API over a running agent (`core`). Serve it on `core.settings.device_api_host/port`."""
    app = FastAPI(
        title="Iotistic Device API",
        version=iotistic.__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",  # behind the API key like everything but /ping
    )
    app.state.core = core
    app.state.apply_wait = apply_wait
    install_error_handlers(app)

    app.include_router(routes_v1.open_router)
    app.include_router(routes_v1.router)
    app.include_router(routes_v2.router)
    app.add_middleware(BodyLimitMiddleware)
    # Outermost: nothing below runs (not even body parsing or routing) for a caller without the key.
    app.add_middleware(ApiKeyMiddleware, current_key=lambda: core.identity.local_api_key)
    install_log_redaction()
    return app


def device_api_server(core: AgentCore, *, host: str | None = None, port: int | None = None,
                      apply_wait: float = DEFAULT_APPLY_WAIT) -> uvicorn.Server:
    """A uvicorn server for the Device API on the configured address (localhost unless `DEVICE_API_HOST` says
    otherwise). Run it with `await server.serve()`; set `server.should_exit = True` to stop it."""
    import uvicorn

    settings = core.settings
    host = host or settings.device_api_host
    port = settings.device_api_port if port is None else port
    if host not in {"127.0.0.1", "::1", "localhost"}:
        log.warning("the Device API listens on %s:%s: remote callers need the local API key", host, port)
    install_log_redaction()
    config = uvicorn.Config(
        create_device_api(core, apply_wait=apply_wait),
        host=host,
        port=port,
        log_config=None,  # the agent's logging setup, with the redaction filter on uvicorn's loggers
        access_log=True,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)
