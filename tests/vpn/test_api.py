"""The certificate manager API, in-process over ASGI on a real PKI directory."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from iotistic.core.settings import ConfigError
from iotistic.vpn.app import create_app
from iotistic.vpn.settings import VpnSettings, load_vpn_settings
from tests.vpn.conftest import PASSPHRASE, make_pki
from tests.vpn.test_pki import openssl
from tests.vpn.test_status import NO_CCD, REVOKED, STATUS_V2

TOKEN = "vpn-service-token-" + "t" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(tmp_path: Path, **env: Any) -> VpnSettings:
    values: dict[str, Any] = {
        "VPN_PKI_DIR": str(tmp_path / "pki"), "VPN_KEY_PASSPHRASE": PASSPHRASE, "VPN_SERVICE_TOKEN": TOKEN,
        "VPN_SERVER_HOST": "vpn.example.com", "VPN_SERVER_PORT": 1194,
        "VPN_STATUS_FILE": str(tmp_path / "status.log"), "VPN_LOG_FILE": str(tmp_path / "openvpn.log"),
    }
    values.update(env)
    return load_vpn_settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> VpnSettings:
    make_pki(tmp_path / "pki")
    (tmp_path / "openvpn.log").write_text("")
    return _settings(tmp_path)


@pytest.fixture
async def api(settings: VpnSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def issue(api: httpx.AsyncClient, device: str, customer: str) -> dict[str, Any]:
    response = await api.post("/api/v1/certificates", json={"deviceId": device, "customerId": customer},
                              headers=AUTH)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


PROTECTED = [
    ("POST", "/api/v1/certificates"), ("GET", "/api/v1/certificates"), ("GET", "/api/v1/certificates/dev-1"),
    ("GET", "/api/v1/certificates/dev-1/ovpn"), ("POST", "/api/v1/certificates/dev-1/renew"),
    ("POST", "/api/v1/certificates/dev-1/revoke"), ("GET", "/api/v1/devices/connected"), ("GET", "/metrics"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-" + "w" * 30},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}])
async def test_every_route_but_ca_crl_and_health_needs_the_token(api: httpx.AsyncClient, method: str, path: str,
                                                                  headers: dict[str, str]) -> None:
    await issue(api, "dev-1", "cust1")
    response = await api.request(method, path, headers=headers, json={"deviceId": "dev-2", "customerId": "c"})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized" and response.headers["WWW-Authenticate"] == "Bearer"
    listed = (await api.get("/api/v1/certificates", headers=AUTH)).json()["certificates"]
    assert [c["deviceId"] for c in listed] == ["dev-1"]  # nothing issued, renewed or revoked


async def test_ca_and_crl_are_public(api: httpx.AsyncClient, settings: VpnSettings, tmp_path: Path) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}
    ca = await api.get("/api/v1/ca.crt")
    assert ca.status_code == 200 and ca.headers["content-type"].startswith("application/x-pem-file")
    assert ca.text == (settings.pki_dir / "ca.crt").read_text()
    pem = await api.get("/api/v1/crl.pem")
    der = await api.get("/api/v1/crl.der")
    assert pem.status_code == der.status_code == 200
    assert der.headers["content-type"] == "application/pkix-crl"
    assert x509.load_der_x509_crl(der.content) == x509.load_pem_x509_crl(pem.content)
    (tmp_path / "crl.der").write_bytes(der.content)
    (tmp_path / "ca.crt").write_text(ca.text)
    checked = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout", "-CAfile",
                      str(tmp_path / "ca.crt"))
    assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr


async def test_issue_returns_metadata_and_a_complete_ovpn(api: httpx.AsyncClient, tmp_path: Path) -> None:
    body = await issue(api, "3f2b1c9e-4a5d-4e6f-8a7b-9c0d1e2f3a4b", "c0123456789ab")
    cert = body["certificate"]
    assert cert["commonName"] == "device-3f2b1c9e-4a5d-4e6f-8a7b-9c0d1e2f3a4b-c0123456789ab"
    assert cert["address"] == "10.8.0.17" and cert["status"] == "valid" and re.fullmatch(r"[0-9a-f]+", cert["serial"])
    ovpn = body["ovpn"]
    assert "remote vpn.example.com 1194" in ovpn
    for tag in ("ca", "cert", "key", "tls-crypt"):
        assert f"<{tag}>" in ovpn and f"</{tag}>" in ovpn
    device_cert = ovpn[ovpn.index("<cert>") + 6:ovpn.index("</cert>")]
    (tmp_path / "dev.crt").write_text(device_cert)
    ca = (await api.get("/api/v1/ca.crt")).text
    (tmp_path / "ca.crt").write_text(ca)
    verified = openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), "-purpose", "sslclient",
                       str(tmp_path / "dev.crt"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert int(cert["serial"], 16) == x509.load_pem_x509_certificate(device_cert.encode()).serial_number
    # Downloading the .ovpn again gives the same certificate and key.
    again = await api.get(f"/api/v1/certificates/{cert['deviceId']}/ovpn", headers=AUTH)
    assert again.status_code == 200 and again.text == ovpn
    assert again.headers["content-type"] == "application/x-openvpn-profile"
    assert again.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("body", "where"), [
    ({"deviceId": "../../etc/passwd", "customerId": "c1"}, "deviceId"),
    ({"deviceId": "dev-1", "customerId": "cust-1"}, "customerId"),
    ({"deviceId": "dev 1", "customerId": "c1"}, "deviceId"),
    ({"deviceId": "dev-1"}, "customerId"),
    ({"deviceId": "dev-1", "customerId": "c1", "extra": 1}, "extra"),
    ({"deviceId": 7, "customerId": "c1"}, "deviceId"),
    ({"deviceId": "d" * 46, "customerId": "c" * 11}, "common name"),  # each id fine, together too long
])
async def test_bad_issue_requests_are_422_with_a_message(api: httpx.AsyncClient, body: dict[str, Any],
                                                         where: str) -> None:
    response = await api.post("/api/v1/certificates", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert where in response.json()["message"]
    assert (await api.get("/api/v1/certificates", headers=AUTH)).json() == {"certificates": []}


async def test_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await api.post("/api/v1/certificates", content=b"{not json", headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"


async def test_duplicate_unknown_and_bad_path_ids(api: httpx.AsyncClient) -> None:
    await issue(api, "dev-1", "cust1")
    dup = await api.post("/api/v1/certificates", json={"deviceId": "dev-1", "customerId": "cust1"}, headers=AUTH)
    assert dup.status_code == 409 and "renew or revoke" in dup.json()["message"]
    for method, path in (("GET", "/api/v1/certificates/ghost"), ("GET", "/api/v1/certificates/ghost/ovpn"),
                         ("POST", "/api/v1/certificates/ghost/renew"), ("POST", "/api/v1/certificates/ghost/revoke")):
        response = await api.request(method, path, headers=AUTH)
        assert response.status_code == 404 and "ghost" in response.json()["message"], (path, response.text)
    bad = await api.get("/api/v1/certificates/..%2F..%2Fetc", headers=AUTH)
    assert bad.status_code in (404, 422) and bad.json()["error"] in ("not_found", "validation_error")
    assert (await api.get("/api/v1/certificates/-x", headers=AUTH)).status_code == 422


async def test_revoke_renew_and_list(api: httpx.AsyncClient) -> None:
    first = (await issue(api, "dev-1", "cust1"))["certificate"]
    await issue(api, "dev-2", "cust2")
    await issue(api, "dev-3", "cust1")
    bad = await api.post("/api/v1/certificates/dev-1/revoke", json={"reason": "superseded"}, headers=AUTH)
    assert bad.status_code == 422  # superseded is what renewal records; a caller cannot choose it
    revoked = await api.post("/api/v1/certificates/dev-1/revoke", json={"reason": "key_compromise"}, headers=AUTH)
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked" and revoked.json()["reason"] == "key_compromise"
    assert revoked.json()["sessionsEnded"] is None  # no management socket configured
    assert (await api.get("/api/v1/certificates/dev-1/ovpn", headers=AUTH)).status_code == 404
    crl = x509.load_pem_x509_crl((await api.get("/api/v1/crl.pem")).content)
    assert crl.get_revoked_certificate_by_serial_number(int(first["serial"], 16)) is not None
    again = await api.post("/api/v1/certificates/dev-1/revoke", headers=AUTH)  # no body: reason unspecified
    assert again.status_code == 404
    renewed = await api.post("/api/v1/certificates/dev-3/renew", headers=AUTH)
    assert renewed.status_code == 200 and renewed.json()["certificate"]["address"] == "10.8.0.18"
    everything = (await api.get("/api/v1/certificates", headers=AUTH)).json()["certificates"]
    assert [(c["deviceId"], c["status"]) for c in everything] == [
        ("dev-1", "revoked"), ("dev-2", "valid"), ("dev-3", "revoked"), ("dev-3", "valid")]
    cust1_valid = await api.get("/api/v1/certificates", params={"customerId": "cust1", "status": "valid"},
                                headers=AUTH)
    assert [c["deviceId"] for c in cust1_valid.json()["certificates"]] == ["dev-3"]
    assert (await api.get("/api/v1/certificates", params={"status": "nope"}, headers=AUTH)).status_code == 422
    assert (await api.get("/api/v1/certificates/dev-1", headers=AUTH)).json()["status"] == "revoked"


def _status(age_seconds: int) -> str:
    stamp = int(dt.datetime.now(dt.UTC).timestamp()) - age_seconds
    return re.sub(r"^TIME,.*$", f"TIME,now,{stamp}", STATUS_V2, flags=re.MULTILINE)


async def test_connected_devices_from_the_status_file(api: httpx.AsyncClient, settings: VpnSettings) -> None:
    missing = (await api.get("/api/v1/devices/connected", headers=AUTH)).json()
    assert missing == {"updatedAt": None, "stale": True, "devices": []}
    settings.status_file.write_text(_status(3))
    fresh = (await api.get("/api/v1/devices/connected", headers=AUTH)).json()
    assert fresh["stale"] is False
    assert [(d["deviceId"], d["customerId"], d["virtualAddress"], d["bytesReceived"]) for d in fresh["devices"]] == [
        ("dev-a", "custA", "10.8.0.17", 2492), (None, None, "10.8.0.40", 10)]
    settings.status_file.write_text(_status(600))  # the server stopped writing it ten minutes ago
    stale = (await api.get("/api/v1/devices/connected", headers=AUTH)).json()
    assert stale["stale"] is True and stale["devices"] == []


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} missing from:\n{text}"
    return float(match.group(1))


async def test_metrics(api: httpx.AsyncClient, settings: VpnSettings) -> None:
    settings.status_file.write_text(_status(1))
    settings.log_file.write_text("\n".join([*REVOKED, NO_CCD]) + "\n")  # appended to the empty log
    response = await api.get("/metrics", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _metric(text, "vpn_connected_devices") == 2
    assert _metric(text, "vpn_bytes_in") == 2502 and _metric(text, "vpn_bytes_out") == 2468
    assert _metric(text, 'vpn_connection_errors_total{reason="certificate"}') == 1
    assert _metric(text, 'vpn_connection_errors_total{reason="no_config"}') == 1
    assert _metric(text, 'vpn_connection_errors_total{reason="tls"}') == 0
    assert _metric(text, "vpn_status_stale") == 0


async def test_missing_pki_is_a_503_not_a_500(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))  # VPN_PKI_DIR holds nothing yet
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/api/v1/certificates", json={"deviceId": "d1", "customerId": "c1"},
                                     headers=AUTH)
        assert response.status_code == 503 and "init-pki" in response.json()["message"]
        assert (await client.get("/api/v1/ca.crt")).status_code == 503


def test_the_app_refuses_to_start_without_a_service_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VPN_SERVICE_TOKEN"):
        create_app(_settings(tmp_path, VPN_SERVICE_TOKEN=None))


async def test_revoke_succeeds_when_the_management_socket_is_unreachable(tmp_path: Path) -> None:
    make_pki(tmp_path / "pki")
    app = create_app(_settings(tmp_path, VPN_MANAGEMENT_SOCKET=str(tmp_path / "no-such.sock")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await issue(client, "dev-1", "cust1")
        response = await client.post("/api/v1/certificates/dev-1/revoke", headers=AUTH)
        assert response.status_code == 200 and response.json()["sessionsEnded"] is None
        crl = x509.load_pem_x509_crl((await client.get("/api/v1/crl.pem")).content)
        assert len(list(crl)) == 1  # revoked all the same
