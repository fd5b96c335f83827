"""The cloud hands devices their VPN configuration, from the REAL certificate manager (`iotistic.vpn.app`, served
by uvicorn on a loopback port with its own PKI): registration, the device's retry route, an admin's download,
revocation when a device is deleted. Certificates are checked with the `openssl` CLI.

The cloud's database does not matter here (the VPN keeps nothing in it): SQLite only.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from iotistic.cloud.models import Device, MqttAccount, Role
from iotistic.vpn.app import create_app as create_cert_manager
from iotistic.vpn.service import VpnService
from iotistic.vpn.settings import VpnSettings, load_vpn_settings
from tests.agent.conftest import free_port
from tests.conftest import Api, LicenseKeys
from tests.vpn.conftest import PASSPHRASE

SERVICE_TOKEN = "cert-manager-token-" + "t" * 24
CUSTOMER = "cust_test"  # the customer id of the test licences (tests/conftest.py)
PUBLIC_HOST = "vpn.example.com"


class CertManagerServer:
    """The certificate manager API served for real; `stop()` and `start()` again on the same port: an outage."""

    def __init__(self, settings: VpnSettings, port: int) -> None:
        self.settings = settings
        self.service = VpnService(settings)
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(create_cert_manager(self.settings, self.service), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"cert-manager-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the certificate manager did not start on port {self.port}")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(15)
        self._server = self._thread = None

    def certificates(self, device_id: str | None = None) -> list[Any]:
        """What the PKI holds (read from its index, not through the API)."""
        return [v for v in self.service.list() if device_id is None or v.record.device_id == device_id]


def cert_manager_settings(root: Path, **env: Any) -> VpnSettings:
    values: dict[str, Any] = {"VPN_PKI_DIR": str(root / "pki"), "VPN_KEY_PASSPHRASE": PASSPHRASE,
                              "VPN_SERVICE_TOKEN": SERVICE_TOKEN, "VPN_SERVER_HOST": PUBLIC_HOST,
                              "VPN_STATUS_FILE": str(root / "status.log"), "VPN_LOG_FILE": str(root / "openvpn.log")}
    values.update(env)
    return load_vpn_settings(**values)


@pytest.fixture
def cert_manager(tmp_path: Path) -> Iterator[CertManagerServer]:
    settings = cert_manager_settings(tmp_path / "vpn")
    server = CertManagerServer(settings, free_port())
    server.service.pki.initialise()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture(params=["on"])
def settings_env(request: pytest.FixtureRequest, cert_manager: CertManagerServer, license_keys: LicenseKeys
                 ) -> dict[str, Any]:
    """The cloud's VPN settings and licence; pick a variant with `@pytest.mark.parametrize(..., indirect=True)`."""
    kind = request.param
    env: dict[str, Any] = {"VPN_ENABLED": "true", "VPN_CERT_MANAGER_URL": cert_manager.url,
                           "VPN_SERVICE_TOKEN": SERVICE_TOKEN, "VPN_CERT_MANAGER_TIMEOUT_SECONDS": 3}
    if kind == "off":
        env = {}
    elif kind == "starter":
        env["IOTISTIC_LICENSE_KEY"] = license_keys.token("starter")
    elif kind == "wrong-token":
        env["VPN_SERVICE_TOKEN"] = "not-the-service-token-" + "x" * 10
    return env


# --- helpers -----------------------------------------------------------------------------------------------------
def inline(ovpn: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", ovpn, re.S)
    assert match, f"no <{tag}> in the configuration"
    return match.group(1) + "\n"


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)


def download(cert_manager: CertManagerServer, path: str) -> str:
    response = httpx.get(cert_manager.url + path, timeout=10)  # public: no token
    assert response.status_code == 200, response.text
    return response.text


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


async def get_vpn(api: Api, device_uuid: str, key: str) -> httpx.Response:
    return await api.client.get(f"/api/v1/device/{device_uuid}/vpn", headers={"X-Device-API-Key": key})


# --- registration ------------------------------------------------------------------------------------------------
async def test_registration_returns_a_config_whose_certificate_verifies(
        api: Api, owner: dict[str, str], cert_manager: CertManagerServer, tmp_path: Path) -> None:
    key = await api.provisioning_key(owner)
    device_uuid = uuidlib.uuid4().hex
    body, _ = await api.register(key["key"], device_uuid)
    vpn = body["vpn"]
    assert (vpn["enabled"], vpn["status"]) == (True, "issued")
    assert vpn["commonName"] == f"device-{device_uuid}-{CUSTOMER}"
    ovpn = vpn["config"]
    assert ovpn.startswith("#") and "\nclient\n" in ovpn and f"\nremote {PUBLIC_HOST} 1194\n" in ovpn

    # The CA in the configuration is the one the certificate manager publishes, and the certificate chains to it
    # and is not on its CRL.
    ca = download(cert_manager, "/api/v1/ca.crt")
    assert inline(ovpn, "ca") == ca
    cert = write(tmp_path, "device.crt", inline(ovpn, "cert"))
    ca_file = write(tmp_path, "ca.crt", ca)
    crl_file = write(tmp_path, "crl.pem", download(cert_manager, "/api/v1/crl.pem"))
    verify = openssl("verify", "-CAfile", ca_file, "-crl_check", "-CRLfile", crl_file, "-purpose", "sslclient", cert)
    assert verify.returncode == 0 and verify.stdout.strip() == f"{cert}: OK", verify.stdout + verify.stderr
    subject = openssl("x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253").stdout.strip()
    assert subject == f"subject=CN=device-{device_uuid}-{CUSTOMER}"
    assert "TLS Web Client Authentication" in openssl("x509", "-in", cert, "-noout", "-ext",
                                                      "extendedKeyUsage").stdout
    # The private key in the configuration is the certificate's.
    key_file = write(tmp_path, "device.key", inline(ovpn, "key"))
    assert openssl("pkey", "-in", key_file, "-pubout").stdout == openssl("x509", "-in", cert, "-noout",
                                                                         "-pubkey").stdout
    # The address is the device's fixed one in the customer's block, as the certificate manager recorded it.
    (issued,) = cert_manager.certificates(device_uuid)
    assert vpn["address"] == issued.record.address and issued.record.customer_id == CUSTOMER


async def test_registering_again_returns_the_same_certificate(api: Api, owner: dict[str, str],
                                                              cert_manager: CertManagerServer) -> None:
    """A device whose reply was lost registers again: same certificate, no second one."""
    key = await api.provisioning_key(owner)
    device_uuid = uuidlib.uuid4().hex
    first, api_key = await api.register(key["key"], device_uuid)
    r = await api.client.post("/api/v1/device/register", headers={"Authorization": f"Bearer {key['key']}"},
                              json={"uuid": device_uuid, "deviceName": "again", "deviceType": "raspberrypi4",
                                    "deviceApiKey": api_key})
    assert r.status_code == 200, r.text
    again = r.json()["vpn"]
    assert again["status"] == "issued"
    assert inline(again["config"], "cert") == inline(first["vpn"]["config"], "cert")
    assert again["address"] == first["vpn"]["address"]
    assert len(cert_manager.certificates(device_uuid)) == 1


@pytest.mark.parametrize("settings_env", ["off"], indirect=True)
async def test_vpn_disabled_gives_no_configuration(api: Api, owner: dict[str, str],
                                                   cert_manager: CertManagerServer) -> None:
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    assert body["vpn"]["enabled"] is False and body["vpn"]["status"] == "disabled"
    assert body["vpn"]["config"] is None and body["vpn"]["address"] is None
    r = await get_vpn(api, body["uuid"], api_key)
    assert r.status_code == 404 and r.json()["error"] == "vpn_disabled"
    assert cert_manager.certificates() == []


@pytest.mark.parametrize("settings_env", ["starter"], indirect=True)
async def test_plan_without_vpn_gives_no_configuration_and_402_when_asked(
        api: Api, owner: dict[str, str], cert_manager: CertManagerServer) -> None:
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"])
    vpn = body["vpn"]
    assert (vpn["enabled"], vpn["status"], vpn["config"]) == (False, "not_licensed", None)
    assert "starter" in vpn["message"]
    r = await get_vpn(api, body["uuid"], api_key)
    assert r.status_code == 402 and r.json()["error"] == "feature_not_licensed"
    r = await api.client.get(f"/api/v1/devices/{body['uuid']}/vpn/config", headers=owner)
    assert r.status_code == 402
    assert cert_manager.certificates() == []  # nothing was issued


async def test_certificate_manager_down_registers_the_device_with_vpn_pending(
        api: Api, owner: dict[str, str], cert_manager: CertManagerServer, app: Any) -> None:
    cert_manager.stop()
    key = await api.provisioning_key(owner)
    device_uuid = uuidlib.uuid4().hex
    started = time.monotonic()
    body, api_key = await api.register(key["key"], device_uuid)
    assert time.monotonic() - started < 5  # a refused connection does not hold registration up
    vpn = body["vpn"]
    assert (vpn["enabled"], vpn["status"], vpn["config"]) == (True, "pending", None)
    assert vpn["retry"] == f"/api/v1/device/{device_uuid}/vpn" and "not reachable" in vpn["message"]
    # The device is registered whole (device row, MQTT account, working API key) and nothing of the VPN exists.
    async with app.state.ctx.sessions() as session:
        assert await session.scalar(select(Device).where(Device.uuid == device_uuid)) is not None
        assert await session.scalar(select(MqttAccount).where(MqttAccount.username == device_uuid)) is not None
    poll = await api.client.get(f"/api/v1/device/{device_uuid}/state", headers={"X-Device-API-Key": api_key})
    assert poll.status_code == 200
    assert cert_manager.certificates() == []
    r = await get_vpn(api, device_uuid, api_key)
    assert r.status_code == 503 and r.json()["error"] == "vpn_unavailable" and r.headers["Retry-After"] == "30"

    cert_manager.start()  # back: the device's next ask gets its configuration
    r = await get_vpn(api, device_uuid, api_key)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "issued" and "<key>" in r.json()["config"]
    assert len(cert_manager.certificates(device_uuid)) == 1


@pytest.mark.parametrize("settings_env", ["wrong-token"], indirect=True)
async def test_a_refused_service_token_leaves_vpn_pending(api: Api, owner: dict[str, str],
                                                          cert_manager: CertManagerServer) -> None:
    key = await api.provisioning_key(owner)
    body, _ = await api.register(key["key"])
    assert body["vpn"]["status"] == "pending" and "service token" in body["vpn"]["message"]
    assert cert_manager.certificates() == []


async def test_another_customers_device_id_is_refused_never_handed_out(
        api: Api, owner: dict[str, str], cert_manager: CertManagerServer) -> None:
    """A device picks its own uuid: one that already holds another customer's certificate gets nothing."""
    device_uuid = uuidlib.uuid4().hex
    cert_manager.service.issue(device_uuid, "othercustomer")
    key = await api.provisioning_key(owner)
    body, api_key = await api.register(key["key"], device_uuid)
    vpn = body["vpn"]
    assert (vpn["status"], vpn["config"]) == ("refused", None)
    assert "another customer" in vpn["message"]
    r = await get_vpn(api, device_uuid, api_key)
    assert r.status_code == 409 and r.json()["error"] == "vpn_refused"
    (other,) = cert_manager.certificates(device_uuid)
    assert (other.record.customer_id, other.state.value) == ("othercustomer", "valid")  # untouched


async def test_device_route_is_for_the_device_itself(api: Api, owner: dict[str, str]) -> None:
    key = await api.provisioning_key(owner)
    first, first_key = await api.register(key["key"])
    second, _ = await api.register(key["key"])
    r = await get_vpn(api, second["uuid"], first_key)
    assert r.status_code == 403
    r = await api.client.get(f"/api/v1/device/{first['uuid']}/vpn")
    assert r.status_code == 401
    r = await get_vpn(api, first["uuid"], "dk_" + "x" * 40)
    assert r.status_code == 401


async def test_admin_downloads_a_devices_ovpn_audited(api: Api, owner: dict[str, str]) -> None:
    key = await api.provisioning_key(owner)
    body, _ = await api.register(key["key"])
    device_uuid = body["uuid"]
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/vpn/config", headers=owner)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-openvpn-profile")
    assert r.headers["content-disposition"] == f'attachment; filename="{device_uuid}.ovpn"'
    assert r.headers["cache-control"] == "no-store"
    assert inline(r.text, "cert") == inline(body["vpn"]["config"], "cert")
    events = (await api.client.get("/api/v1/audit", params={"action": "device.vpn_config_downloaded"},
                                   headers=owner)).json()
    assert [(e["targetType"], e["targetId"]) for e in events] == [("device", device_uuid)]
    assert events[0]["actor"].startswith("owner-")  # the user who downloaded it
    operator = await api.headers_for(Role.operator)
    assert (await api.client.get(f"/api/v1/devices/{device_uuid}/vpn/config", headers=operator)).status_code == 403
    assert (await api.client.get(f"/api/v1/devices/{device_uuid}/vpn/config")).status_code == 401
    missing = await api.client.get(f"/api/v1/devices/{uuidlib.uuid4().hex}/vpn/config", headers=owner)
    assert missing.status_code == 404


async def test_deleting_a_device_revokes_its_certificate(api: Api, owner: dict[str, str],
                                                         cert_manager: CertManagerServer, tmp_path: Path) -> None:
    key = await api.provisioning_key(owner)
    body, _ = await api.register(key["key"])
    device_uuid = body["uuid"]
    r = await api.client.delete(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.status_code == 204
    (record,) = cert_manager.certificates(device_uuid)
    assert record.state.value == "revoked"
    # The published CRL lists it: openssl refuses the certificate now.
    crl_file = write(tmp_path, "crl.pem", download(cert_manager, "/api/v1/crl.pem"))
    listing = openssl("crl", "-in", crl_file, "-noout", "-text").stdout
    listed = {int(serial, 16) for serial in re.findall(r"Serial Number: ([0-9A-F]+)", listing)}
    assert int(record.record.serial, 16) in listed
    cert = write(tmp_path, "device.crt", inline(body["vpn"]["config"], "cert"))
    ca_file = write(tmp_path, "ca.crt", download(cert_manager, "/api/v1/ca.crt"))
    verify = openssl("verify", "-CAfile", ca_file, "-crl_check", "-CRLfile", crl_file, cert)
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
