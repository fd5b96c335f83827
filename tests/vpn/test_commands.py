"""`iotistic vpn ...`: the commands an operator runs, on a real PKI directory."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from iotistic.cli import app
from tests.vpn.conftest import PASSPHRASE
from tests.vpn.test_pki import openssl

TOKEN = "vpn-service-token-" + "s" * 24


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    values: dict[str, str | None] = {name: None for name in os.environ if name.startswith("VPN_")}  # unset
    values.update(VPN_PKI_DIR=str(tmp_path / "pki"), VPN_KEY_PASSPHRASE=PASSPHRASE, VPN_SERVER_HOST="vpn.example.com",
                  VPN_STATUS_FILE=str(tmp_path / "status.log"), VPN_LOG_FILE=str(tmp_path / "openvpn.log"))
    return values


def vpn(env: dict[str, str | None], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["vpn", *args], env=env)
    return result.exit_code, result.output


def test_init_generate_revoke(env: dict[str, str | None], tmp_path: Path) -> None:
    code, output = vpn(env, "init-pki")
    assert code == 0 and "PKI created" in output, output
    pki = tmp_path / "pki"
    assert openssl("verify", "-CAfile", str(pki / "ca.crt"), "-purpose", "sslserver", str(pki / "server.crt")
                   ).returncode == 0
    server = openssl("x509", "-in", str(pki / "server.crt"), "-noout", "-ext", "subjectAltName").stdout
    assert "DNS:vpn.example.com" in server  # VPN_SERVER_HOST is in the server certificate
    code, output = vpn(env, "init-pki")
    assert code == 1 and "already exists" in output

    ovpn = tmp_path / "out" / "dev-1.ovpn"
    code, output = vpn(env, "generate-client", "dev-1", "acme", "--output", str(ovpn))
    assert code == 0 and "10.8.0.17" in output and "device-dev-1-acme" in output, output
    assert stat.S_IMODE(ovpn.stat().st_mode) == 0o600
    text = ovpn.read_text()
    assert "remote vpn.example.com 1194" in text and "<key>" in text and "BEGIN PRIVATE KEY" in text
    assert PASSPHRASE not in output and "PRIVATE KEY" not in output  # the key goes to the file only

    code, output = vpn(env, "generate-client", "dev-1", "acme", "--output", str(ovpn))
    assert code == 1 and "already has a valid certificate" in output
    code, output = vpn(env, "renew-client", "dev-1", "--output", str(ovpn))
    assert code == 0 and "10.8.0.17" in output and ovpn.read_text() != text
    assert stat.S_IMODE(ovpn.stat().st_mode) == 0o600
    code, output = vpn(env, "revoke-client", "dev-1", "--reason", "key_compromise")
    assert code == 0 and "revoked" in output and "key_compromise" in output
    crl = openssl("crl", "-in", str(pki / "crl.pem"), "-noout", "-text").stdout
    assert "Key Compromise" in crl
    code, output = vpn(env, "list")
    assert code == 0 and output.count("dev-1") == 2 and output.count("revoked") == 2  # renewed, then revoked


def test_bad_input_and_configuration(env: dict[str, str | None], tmp_path: Path) -> None:
    code, output = vpn(env, "generate-client", "dev-1", "acme")
    assert code == 1 and "init-pki" in output  # no PKI yet
    assert vpn(env, "init-pki")[0] == 0
    code, output = vpn(env, "generate-client", "../../etc/x", "acme", "-o", str(tmp_path / "x.ovpn"))
    assert code == 2 and "device id" in output and not (tmp_path / "x.ovpn").exists()
    code, output = vpn(env, "revoke-client", "ghost")
    assert code == 1 and "ghost" in output
    code, output = vpn({**env, "VPN_KEY_PASSPHRASE": "another-passphrase"}, "generate-client", "dev-2", "acme")
    assert code == 1 and "wrong VPN_KEY_PASSPHRASE" in output and "another-passphrase" not in output
    code, output = vpn({**env, "VPN_KEY_PASSPHRASE": ""}, "init-pki")
    assert code == 2 and "VPN_KEY_PASSPHRASE" in output
    code, output = vpn({**env, "VPN_NETMASK": "255.0.255.0"}, "list")
    assert code == 2 and "VPN_NETMASK" in output


def test_render_server_config(env: dict[str, str | None], tmp_path: Path) -> None:
    assert vpn(env, "init-pki")[0] == 0
    out = tmp_path / "server.conf"
    code, output = vpn({**env, "VPN_SUBNET": "10.9.0.0", "VPN_NETMASK": "255.255.0.0", "VPN_CUSTOMER_BLOCK": "256",
                        "VPN_MANAGEMENT_SOCKET": "/run/openvpn/mgmt.sock"},
                       "render-server-config", "-o", str(out), "--askpass", "/run/secrets/vpn-passphrase")
    assert code == 0, output
    text = out.read_text()
    assert "ifconfig 10.9.0.1 255.255.0.0" in text and 'askpass "/run/secrets/vpn-passphrase"' in text
    assert f'crl-verify "{tmp_path}/pki/crl.pem"' in text and 'management "/run/openvpn/mgmt.sock" unix' in text
    assert f'status "{tmp_path}/status.log" 10' in text and "client-to-client" not in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_api_on_loopback(env: dict[str, str | None]) -> None:
    assert vpn(env, "init-pki")[0] == 0
    port = _free_port()
    full_env = {k: v for k, v in {**os.environ, **env, "VPN_SERVICE_TOKEN": TOKEN}.items() if v is not None}
    script = Path(sys.executable).parent / "iotistic"
    process = subprocess.Popen([str(script), "vpn", "serve", "--host", "127.0.0.1", "--port", str(port)],
                               env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "vpn serve did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/api/v1/certificates").status_code == 401
        issued = httpx.post(f"{base}/api/v1/certificates", json={"deviceId": "d1", "customerId": "c1"},
                            headers={"Authorization": f"Bearer {TOKEN}"})
        assert issued.status_code == 201 and issued.json()["certificate"]["address"] == "10.8.0.17"
        assert "BEGIN CERTIFICATE" in httpx.get(f"{base}/api/v1/ca.crt").text
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert PASSPHRASE not in output and TOKEN not in output


def test_serve_refuses_without_a_token_or_with_a_wrong_passphrase(env: dict[str, str | None]) -> None:
    assert vpn(env, "init-pki")[0] == 0
    code, output = vpn(env, "serve", "--port", "1")
    assert code == 2 and "VPN_SERVICE_TOKEN" in output
    code, output = vpn({**env, "VPN_SERVICE_TOKEN": TOKEN, "VPN_KEY_PASSPHRASE": "another-passphrase"},
                       "serve", "--port", "1")
    assert code == 1 and "wrong VPN_KEY_PASSPHRASE" in output
