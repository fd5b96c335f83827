"""The client's `.ovpn` text: what the agent accepts and how it adapts it. Pure: no files, no processes.

The agent runs `openvpn` as root with this text, so the text is treated as input, not as trusted code: directives
that run programs or load code (`up`, `plugin`, `engine`, ...), that read other files than the inline PEMs, or
that would take over what the supervisor owns (the management interface, logging, daemonising) are refused.
`openvpn` is also started with `--script-security 1`, so a hook that slipped through would still not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: The certificate manager's configurations are a few KiB (inline CA, certificate, key and tls-crypt key).
MAX_CONFIG_BYTES = 64 * 1024

# Directives that run commands or load code, read files or devices on the agent's behalf, or belong to the
# supervisor (management, logging, pid files, daemon mode).
_FORBIDDEN = frozenset({
    "up", "down", "route-up", "route-pre-down", "ipchange", "tls-verify", "auth-user-pass-verify",
    "client-connect", "client-disconnect", "learn-address", "plugin", "script-security", "iproute",
    "engine", "providers", "provider-path", "pkcs11-providers", "pkcs11-id", "pkcs11-id-management",
    "askpass", "auth-user-pass", "config", "cd", "chroot", "daemon", "log", "log-append", "syslog",
    "writepid", "status", "status-version", "tmp-dir", "tls-export-cert", "management", "echo",
})
_FORBIDDEN_PREFIXES = ("management-",)
# Inline blocks that may carry key material; anything else (e.g. <connection>, which holds its own directives)
# is refused rather than half-understood.
_INLINE_TAGS = frozenset({"ca", "cert", "key", "tls-crypt", "tls-auth", "tls-crypt-v2", "extra-certs", "crl-verify",
                          "dh", "secret"})
_OPEN_TAG = re.compile(r"^<([a-z0-9-]+)>$")
_HOST = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")


class VpnConfigError(ValueError):
    """The text is not a configuration the agent will run; the message says why, in one line."""


@dataclass(frozen=True)
class Remote:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _directive(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped[0] in "#;":
        return None
    return stripped.split()[0].removeprefix("--").lower()


def _classify(lines: list[str]) -> Iterator[tuple[int, str, str | None]]:
    """Each line with what it is: `directive` (named by the third item), `open` (an inline block's tag, named),
    `inside` (a block's content or its closing tag) or `blank` (empty or a comment)."""
    open_tag: str | None = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if open_tag is not None:
            if stripped == f"</{open_tag}>":
                open_tag = None
            yield index, "inside", None
            continue
        match = _OPEN_TAG.match(stripped)
        if match:
            open_tag = match.group(1)
            yield index, "open", open_tag
            continue
        name = _directive(line)
        yield (index, "blank", None) if name is None else (index, "directive", name)
    if open_tag is not None:
        raise VpnConfigError(f"inline block <{open_tag}> is not closed")


def _check(lines: list[str]) -> None:
    """Raise VpnConfigError for a refused directive or block."""
    for index, kind, name in _classify(lines):
        if kind == "open" and name not in _INLINE_TAGS:
            raise VpnConfigError(f"line {index + 1}: inline block <{name}> is not accepted")
        if kind == "directive" and name and (name in _FORBIDDEN or name.startswith(_FORBIDDEN_PREFIXES)):
            raise VpnConfigError(f"line {index + 1}: directive {name!r} is not accepted (it runs programs, reads "
                                 "files or conflicts with the agent's supervision)")


def remotes(text: str) -> list[Remote]:
    """The `remote HOST [PORT]` entries, in order (the port defaults to a `port` directive, else 1194)."""
    lines = text.splitlines()
    default_port = 1194
    found: list[tuple[str, int | None]] = []
    for index, kind, name in _classify(lines):
        words = lines[index].split()
        if kind != "directive" or len(words) < 2:
            continue
        if name == "port" and words[1].isdigit():
            default_port = int(words[1])
        elif name == "remote":
            found.append((words[1], int(words[2]) if len(words) > 2 and words[2].isdigit() else None))
    return [Remote(host, port if port is not None else default_port) for host, port in found]


def is_client(text: str) -> bool:
    lines = text.splitlines()
    return any(kind == "directive" and name in ("client", "tls-client") for _, kind, name in _classify(lines))


def prepare(text: str, *, server_host: str | None = None, server_port: int = 1194) -> str:
    """Check `text` and return what the client runs: with `server_host` set, every `remote` line is replaced by
    `remote <server_host> <server_port>` (the device reaches the server under another name or address than the
    certificate manager put in, e.g. through a NAT or from inside a test's network namespace)."""
    if not text.strip():
        raise VpnConfigError("the VPN configuration is empty")
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise VpnConfigError(f"the VPN configuration is larger than {MAX_CONFIG_BYTES} bytes")
    if "\x00" in text:
        raise VpnConfigError("the VPN configuration contains NUL characters")
    lines = text.replace("\r\n", "\n").split("\n")
    _check(lines)
    if server_host is not None:
        if not _HOST.match(server_host):
            raise VpnConfigError(f"VPN server host {server_host!r} is not a host name or address")
        if not 1 <= server_port <= 65535:
            raise VpnConfigError(f"VPN server port {server_port} is out of range")
        lines = _replace_remotes(lines, f"remote {server_host} {server_port}")
    prepared = "\n".join(lines).rstrip("\n") + "\n"
    if not remotes(prepared):
        raise VpnConfigError("the VPN configuration names no server (no `remote` line; set VPN_SERVER_HOST)")
    if not is_client(prepared):
        raise VpnConfigError("the VPN configuration is not a client configuration (no `client` directive)")
    return prepared


def _replace_remotes(lines: list[str], remote_line: str) -> list[str]:
    classified = list(_classify(lines))
    drop = {index for index, kind, name in classified if kind == "directive" and name in ("remote", "remote-random")}
    # Ours goes where the first remote was, else before the first inline block (where directives usually end).
    at = min(drop, default=next((index for index, kind, _ in classified if kind == "open"), len(lines)))
    out = [line for index, line in enumerate(lines) if index not in drop and index < at]
    return [*out, remote_line, *(line for index, line in enumerate(lines) if index not in drop and index >= at)]
