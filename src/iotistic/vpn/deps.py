"""FastAPI dependencies of the certificate manager: the service and the service-token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from iotistic.cloud.errors import unauthorized
from iotistic.core.security import tokens_equal
from iotistic.vpn.names import DEVICE_ID_PATTERN
from iotistic.vpn.service import VpnService

_bearer = HTTPBearer(auto_error=False, description="VPN_SERVICE_TOKEN")


def get_service(request: Request) -> VpnService:
    service: VpnService = request.app.state.service
    return service


Service = Annotated[VpnService, Depends(get_service)]


def require_token(service: Service,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token = service.settings.service_token
    if creds is None or creds.scheme.lower() != "bearer":
        raise unauthorized("Authorization: Bearer <VPN_SERVICE_TOKEN> required")
    # Constant time: the comparison must not tell how much of a guessed token was right.
    if not token or not tokens_equal(creds.credentials, token):
        raise unauthorized("invalid service token")


Authenticated = Depends(require_token)
DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="the device id of the certificate")]
