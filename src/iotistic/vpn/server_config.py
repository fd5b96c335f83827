"""OpenVPN configuration text: the server's config, its client-config-dir entries and a device's `.ovpn`
(pure: values in, text out; writing the files is the caller's business).

Choices that make the design:
- `mode server` with `ifconfig` and no `ifconfig-pool` (what the `server` macro expands to, minus the pool):
  a device gets exactly the address of its client-config-dir entry, and `ccd-exclusive` refuses any
  certificate without one, even one the CA signed (revocation removes the entry and adds the serial to the CRL).
- No `client-to-client`: every packet between two devices goes up into the server's tun device, where the
  kernel drops it unless the server host forwards tun to tun (it must not: that keeps customers, and devices of
  one customer, apart; remote access runs from the server side to a device).
- `crl-verify`: OpenVPN re-reads the CRL file when it changes, at the next TLS handshake.
- AES-256-GCM only on the data channel, TLS 1.2 at least, tls-crypt on the control channel (packets without the
  shared key are dropped before any TLS parsing), no redirected default gateway unless asked for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from iotistic.vpn.addressing import AddressPlan

CIPHER = "AES-256-GCM"


@dataclass(frozen=True)
class ServerFiles:
    ca: Path
    cert: Path
    key: Path
    crl: Path
    tls_crypt: Path
    ccd_dir: Path


@dataclass(frozen=True)
class ServerOptions:
    plan: AddressPlan
    port: int = 1194
    local: str | None = None  # listen on this address only; all addresses when None
    dev: str = "tun0"
    # The server key is encrypted: OpenVPN reads its passphrase from this file (a mounted secret, a pipe).
    askpass: Path | None = None
    status_file: Path | None = None
    status_interval: int = 10
    log_file: Path | None = None
    # A unix socket for OpenVPN's management interface (the certificate manager ends revoked sessions through it).
    management_socket: Path | None = None
    # OpenVPN drops root after start; it then still reads the CRL and client-config-dir (world-readable).
    user: str | None = "nobody"
    group: str | None = "nogroup"
    keepalive: tuple[int, int] = (10, 60)
    redirect_gateway: bool = False
    verb: int = 3


def _quote(value: str | Path) -> str:
    """OpenVPN config quoting for paths: double quotes, backslash escapes."""
    text = str(value)
    if any(c in text for c in '\n\r\0'):
        raise ValueError(f"{text!r} cannot appear in an OpenVPN config")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_server_config(options: ServerOptions, files: ServerFiles) -> str:
    plan = options.plan
    server, netmask = plan.server_address, plan.netmask
    lines = [
        "# OpenVPN server configuration rendered by `iotistic vpn render-server-config`; edits are overwritten.",
        "mode server",
        "tls-server",
        "proto udp",
        f"port {options.port}",
    ]
    if options.local:
        lines.append(f"local {ipaddress.ip_address(options.local)}")
    lines += [
        f"dev {options.dev}",
        "dev-type tun",
        "topology subnet",
        f"ifconfig {server} {netmask}",
        'push "topology subnet"',
        f'push "route-gateway {server}"',
        f"# Devices get fixed addresses from per-customer blocks of {plan.network} "
        f"({plan.block_size} addresses each) in their client-config-dir entry.",
        f"client-config-dir {_quote(files.ccd_dir)}",
        "ccd-exclusive",
    ]
    if options.redirect_gateway:
        lines.append('push "redirect-gateway def1"')
    lines += [
        f"ca {_quote(files.ca)}",
        f"cert {_quote(files.cert)}",
        f"key {_quote(files.key)}",
    ]
    if options.askpass:
        lines.append(f"askpass {_quote(options.askpass)}")
    lines += [
        "dh none",
        f"tls-crypt {_quote(files.tls_crypt)}",
        f"crl-verify {_quote(files.crl)}",
        "remote-cert-tls client",
        "verify-x509-name device- name-prefix",
        "tls-version-min 1.2",
        f"data-ciphers {CIPHER}",
        f"keepalive {options.keepalive[0]} {options.keepalive[1]}",
        # Tell devices on restart, so they reconnect at once instead of after the keepalive timeout.
        "explicit-exit-notify 1",
        "persist-key",
        "persist-tun",
    ]
    if options.user:
        lines.append(f"user {options.user}")
    if options.group:
        lines.append(f"group {options.group}")
    if options.status_file:
        lines += [f"status {_quote(options.status_file)} {options.status_interval}", "status-version 2"]
    if options.log_file:
        lines.append(f"log-append {_quote(options.log_file)}")
    if options.management_socket:
        lines.append(f"management {_quote(options.management_socket)} unix")
    lines.append(f"verb {options.verb}")
    return "\n".join(lines) + "\n"


def render_ccd(common_name: str, customer_id: str, address: ipaddress.IPv4Address, plan: AddressPlan) -> str:
    """A device's client-config-dir entry: its fixed address."""
    block = plan.block(plan.block_of(address))
    return (f"# {common_name}: customer {customer_id}, block {block}\n"
            f"ifconfig-push {address} {plan.netmask}\n")


@dataclass(frozen=True)
class ClientBundle:
    remote_host: str
    remote_port: int
    server_name: str  # the server certificate's CN, checked by the device
    ca_pem: str
    cert_pem: str
    key_pem: str
    tls_crypt_key: str


def _inline(tag: str, text: str) -> str:
    body = text.strip()
    if f"</{tag}>" in body:
        raise ValueError(f"{tag} content contains its own closing tag")
    return f"<{tag}>\n{body}\n</{tag}>"


def render_client_config(bundle: ClientBundle) -> str:
    """The device's complete `.ovpn`: everything inline, nothing else to download."""
    if not bundle.remote_host or any(c.isspace() or c in "\"'\\#;" for c in bundle.remote_host):
        raise ValueError(f"server host {bundle.remote_host!r} is not a host name or address")
    lines = [
        "# Iotistic device VPN configuration. Keep it secret: it holds the device's private key.",
        "client",
        "dev tun",
        "proto udp",
        f"remote {bundle.remote_host} {bundle.remote_port}",
        "nobind",
        "resolv-retry infinite",
        # After an outage retry every 2 s, backing off to 30 s at most (OpenVPN's default ceiling is 300 s).
        "connect-retry 2 30",
        "persist-key",
        "persist-tun",
        "remote-cert-tls server",
        f"verify-x509-name {bundle.server_name} name",
        "tls-version-min 1.2",
        f"data-ciphers {CIPHER}",
        "verb 3",
        _inline("ca", bundle.ca_pem),
        _inline("cert", bundle.cert_pem),
        _inline("key", bundle.key_pem),
        _inline("tls-crypt", bundle.tls_crypt_key),
    ]
    return "\n".join(lines) + "\n"
