"""The rendered OpenVPN texts (pure), and OpenVPN itself accepting them."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from iotistic.vpn.addressing import AddressPlan
from iotistic.vpn.server_config import (
    ClientBundle,
    ServerFiles,
    ServerOptions,
    render_ccd,
    render_client_config,
    render_server_config,
)

PLAN = AddressPlan.from_strings("10.8.0.0", "255.255.255.0", 16)
FILES = ServerFiles(ca=Path("/pki/ca.crt"), cert=Path("/pki/server.crt"), key=Path("/pki/private/server.key"),
                    crl=Path("/pki/crl.pem"), tls_crypt=Path("/pki/private/tls-crypt.key"), ccd_dir=Path("/pki/ccd"))


def directives(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_server_config_has_the_designs_directives() -> None:
    lines = directives(render_server_config(ServerOptions(plan=PLAN, askpass=Path("/run/secrets/pass"),
                                                          status_file=Path("/var/log/openvpn/status.log")), FILES))
    for expected in ("mode server", "tls-server", "proto udp", "port 1194", "topology subnet",
                     "ifconfig 10.8.0.1 255.255.255.0", 'push "topology subnet"', 'push "route-gateway 10.8.0.1"',
                     'client-config-dir "/pki/ccd"', "ccd-exclusive", 'crl-verify "/pki/crl.pem"',
                     "data-ciphers AES-256-GCM", "remote-cert-tls client", "dh none",
                     'tls-crypt "/pki/private/tls-crypt.key"', 'askpass "/run/secrets/pass"', "user nobody",
                     'status "/var/log/openvpn/status.log" 10', "status-version 2", "explicit-exit-notify 1"):
        assert expected in lines, expected
    joined = "\n".join(lines)
    # Isolation and a device's own internet access: neither directive appears unless asked for.
    assert "client-to-client" not in joined and "redirect-gateway" not in joined
    # Addresses come only from client-config-dir entries: no dynamic pool, no `server` macro that adds one.
    assert not any(line.startswith(("ifconfig-pool", "server ")) for line in lines)


def test_server_config_options() -> None:
    plan = AddressPlan.from_strings("10.9.0.0", "255.255.0.0", 256)
    text = render_server_config(ServerOptions(plan=plan, port=1195, local="192.0.2.10", user=None, group=None,
                                              redirect_gateway=True,
                                              management_socket=Path("/run/openvpn/mgmt.sock")), FILES)
    lines = directives(text)
    assert "ifconfig 10.9.0.1 255.255.0.0" in lines and "port 1195" in lines and "local 192.0.2.10" in lines
    assert 'push "redirect-gateway def1"' in lines and 'management "/run/openvpn/mgmt.sock" unix' in lines
    assert not any(line.startswith(("user ", "group ")) for line in lines)
    with pytest.raises(ValueError):
        render_server_config(ServerOptions(plan=plan, local="not-an-ip; up /bin/sh"), FILES)
    with pytest.raises(ValueError):
        render_server_config(ServerOptions(plan=plan), ServerFiles(**{**FILES.__dict__, "crl": Path("/x\ny")}))


def test_ccd_entry_pushes_the_fixed_address_with_the_subnet_mask() -> None:
    text = render_ccd("device-d1-acme", "acme", ipaddress.IPv4Address("10.8.0.18"), PLAN)
    assert directives(text) == ["ifconfig-push 10.8.0.18 255.255.255.0"]
    assert "block 10.8.0.16/28" in text


def _bundle(**changes: str) -> ClientBundle:
    values = {"remote_host": "vpn.example.com", "server_name": "iotistic-vpn-server",
              "ca_pem": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
              "cert_pem": "-----BEGIN CERTIFICATE-----\nDEV\n-----END CERTIFICATE-----\n",
              "key_pem": "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n",
              "tls_crypt_key": "-----BEGIN OpenVPN Static key V1-----\nab\n-----END OpenVPN Static key V1-----\n"}
    values.update(changes)
    return ClientBundle(remote_port=1194, **values)


def test_client_config_is_complete_and_inline() -> None:
    text = render_client_config(_bundle())
    lines = directives(text)
    for expected in ("client", "dev tun", "proto udp", "remote vpn.example.com 1194", "nobind",
                     "remote-cert-tls server", "verify-x509-name iotistic-vpn-server name", "data-ciphers AES-256-GCM",
                     "persist-tun"):
        assert expected in lines, expected
    for tag, body in (("ca", "CA"), ("cert", "DEV"), ("key", "KEY"), ("tls-crypt", "ab")):
        start, end = text.index(f"<{tag}>"), text.index(f"</{tag}>")
        assert body in text[start:end]
    # Nothing that runs commands on the device.
    assert not any(line.split()[0] in {"up", "down", "script-security", "plugin"} for line in lines)


@pytest.mark.parametrize("host", ["", "vpn.example.com up /bin/sh", "a\nup /bin/sh", "x;y", "x#y"])
def test_client_config_refuses_hosts_that_would_inject_directives(host: str) -> None:
    with pytest.raises(ValueError):
        render_client_config(_bundle(remote_host=host))


def test_client_config_refuses_pem_that_closes_its_own_block() -> None:
    with pytest.raises(ValueError):
        render_client_config(_bundle(cert_pem="x\n</cert>\nup /bin/sh\n<cert>\ny"))


def test_openvpn_parses_the_rendered_server_config(tmp_path: Path) -> None:
    """OpenVPN's own option parser accepts every rendered directive: a bad directive is reported before OpenVPN
    touches any file, so failing on the first missing file proves the whole text parsed (tests/vpn/test_tunnel.py
    runs the server for real)."""
    config = tmp_path / "server.conf"
    config.write_text(render_server_config(ServerOptions(plan=PLAN, management_socket=tmp_path / "m.sock"), FILES))
    result = subprocess.run(["openvpn", "--config", str(config)], capture_output=True, text=True, timeout=30,
                            check=False)
    output = result.stdout + result.stderr
    assert "Unrecognized option" not in output and "Options error" not in output, output
    assert "Cannot pre-load keyfile (/pki/private/tls-crypt.key)" in output and result.returncode != 0, output
