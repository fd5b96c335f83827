"""The certificate manager API (FastAPI, port 8080): `iotistic vpn serve`.

Every route needs `Authorization: Bearer <VPN_SERVICE_TOKEN>` except /health, the CA certificate and the CRL.
The PKI directory has one writer at a time (a file lock per change); run one replica per PKI directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

import iotistic
from iotistic.cloud.errors import ErrorBody, install_error_handlers
from iotistic.core.settings import ConfigError
from iotistic.vpn.addressing import AddressSpaceExhausted
from iotistic.vpn.metrics import VpnCollector
from iotistic.vpn.names import InvalidName
from iotistic.vpn.pki import AlreadyIssued, DeviceNotFound, PkiError, PkiMissing, WrongPassphrase
from iotistic.vpn.routers import certificates, devices, public
from iotistic.vpn.service import VpnService
from iotistic.vpn.settings import VpnSettings

log = logging.getLogger(__name__)

# How often the CRL's remaining validity is checked (it is re-signed when half of VPN_CRL_DAYS is left).
CRL_CHECK_SECONDS = 3600

# PKI outcomes as HTTP statuses: a caller's mistake is a 4xx with the reason; a server not set up is a 503.
_STATUSES: list[tuple[type[Exception], int, str]] = [
    (InvalidName, 422, "validation_error"),
    (AlreadyIssued, 409, "conflict"),
    (AddressSpaceExhausted, 409, "address_space_exhausted"),
    (DeviceNotFound, 404, "not_found"),
    (PkiMissing, 503, "pki_missing"),
    (WrongPassphrase, 503, "pki_locked"),
    (ConfigError, 503, "misconfigured"),
    (PkiError, 400, "bad_request"),
]


def _install_pki_errors(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        for kind, status, error in _STATUSES:
            if isinstance(exc, kind):
                if status >= 500:
                    log.error("%s", exc)
                return JSONResponse({"error": error, "message": str(exc)}, status_code=status)
        raise exc  # pragma: no cover - every registered type is in the table

    for kind, _status, _error in _STATUSES:
        app.add_exception_handler(kind, handle)


async def _keep_crl_fresh(service: VpnService) -> None:
    while True:
        try:
            if await asyncio.to_thread(service.pki.refresh_crl_if_due):
                log.info("CRL re-signed (next update in %d days)", service.settings.crl_days)
        except Exception:  # keep trying: an expired CRL locks every device out
            log.exception("could not re-sign the CRL")
        await asyncio.sleep(CRL_CHECK_SECONDS)


def create_app(settings: VpnSettings, service: VpnService | None = None) -> FastAPI:
    if not settings.service_token:
        raise ConfigError("VPN_SERVICE_TOKEN is not set (at least 24 characters): it authenticates API callers")
    service = service or VpnService(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_keep_crl_fresh(service), name="crl-refresh")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="Iotistic VPN certificate manager", version=iotistic.__version__, lifespan=lifespan,
                  responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody},
                             422: {"model": ErrorBody}})
    app.state.service = service
    app.state.registry = CollectorRegistry()
    app.state.registry.register(VpnCollector(service))
    install_error_handlers(app)
    _install_pki_errors(app)
    for module in (public, certificates, devices):
        app.include_router(module.router)
    return app
