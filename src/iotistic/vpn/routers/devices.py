"""Devices connected to the OpenVPN server now (from its status file), and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iotistic.vpn.deps import Authenticated, Service
from iotistic.vpn.schemas import ConnectedDevices

router = APIRouter(tags=["devices"], dependencies=[Authenticated])


@router.get("/api/v1/devices/connected")
def connected(service: Service) -> ConnectedDevices:
    return ConnectedDevices.of(service.connected())


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
