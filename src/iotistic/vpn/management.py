"""OpenVPN's management interface (a unix socket): ends a revoked device's live session at once.

OpenVPN checks the CRL at each TLS handshake, so a revoked device that is already connected would otherwise keep
its session until the next renegotiation (every hour by default) or reconnection. The socket is created by
OpenVPN as root (mode 0700 directory recommended); whoever can open it controls the server.
"""

from __future__ import annotations

import socket
from pathlib import Path

from iotistic.vpn.names import parse_common_name


class ManagementError(Exception):
    """The management interface could not be reached or did not answer as expected."""


def _read_line(conn: socket.socket, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        chunk = conn.recv(4096)
        if not chunk:
            raise ManagementError("the management interface closed the connection")
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode(errors="replace").rstrip("\r")


def kill_client(socket_path: Path, common_name: str, timeout: float = 5) -> int:
    """Disconnect every session of `common_name`; the number of sessions ended (0: it was not connected)."""
    parse_common_name(common_name)  # a validated name: no newline can smuggle another command in
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            buffer = bytearray()
            conn.sendall(f"kill {common_name}\n".encode())
            while True:
                line = _read_line(conn, buffer)
                if line.startswith(">"):
                    continue  # the greeting and real-time notifications
                if line.startswith("SUCCESS:"):
                    # `SUCCESS: common name 'X' found, N client(s) killed`
                    words = line.split()
                    count = int(words[words.index("client(s)") - 1]) if "client(s)" in words else 1
                    break
                if line.startswith("ERROR:") and "not found" in line:
                    count = 0
                    break
                raise ManagementError(f"unexpected answer from the management interface: {line[:200]}")
            conn.sendall(b"quit\n")
            return count
    except OSError as exc:
        raise ManagementError(f"management interface {socket_path}: {exc}") from None
