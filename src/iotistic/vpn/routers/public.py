"""Unauthenticated: health, the CA certificate and the CRL (public by nature: devices and relying parties fetch
them to verify)."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter
from fastapi.responses import Response

from iotistic.vpn.deps import Service

router = APIRouter(tags=["public"])


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/v1/ca.crt", response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def ca_certificate(service: Service) -> Response:
    return Response(service.ca_pem(), media_type="application/x-pem-file")


@router.get("/api/v1/crl.pem", response_class=Response,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def crl_pem(service: Service) -> Response:
    return Response(service.crl(Encoding.PEM), media_type="application/x-pem-file")


@router.get("/api/v1/crl.der", response_class=Response, responses={200: {"content": {"application/pkix-crl": {}}}})
def crl_der(service: Service) -> Response:
    return Response(service.crl(Encoding.DER), media_type="application/pkix-crl")
