"""Failed connection attempts, counted from the OpenVPN server's log.

What counts as a connection error (the `reason` label of `vpn_connection_errors`):
- `certificate`: the server refused a certificate (`VERIFY ... ERROR`: revoked, expired, another CA, wrong
  extended key usage or name);
- `tls`: a TLS handshake that failed for another reason (`TLS Error: TLS handshake failed` from a peer without a
  certificate error just before, e.g. a handshake timeout);
- `no_config`: a valid certificate without a client-config-dir entry, refused by `ccd-exclusive` (`TLS Auth
  Error: --client-config-dir authentication failed`);
- `tls_crypt`: packets that failed tls-crypt authentication (counted per packet: someone without the key).
`classify_line` is pure; `LogScanner` reads what the log gained since the previous scan.
"""

from __future__ import annotations

import os
import re
from collections import Counter, OrderedDict
from pathlib import Path

REASONS = ("certificate", "tls", "no_config", "tls_crypt")

# `2024-01-01 12:00:00 ` then, for per-client lines, `ip:port ` or `cn/ip:port `.
_PEER = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )?(?:[^ /]+/)?(\S+:\d+) ")
_CERTIFICATE = re.compile(r"VERIFY (?:[A-Z0-9]+ )?ERROR")
_HANDSHAKE = "TLS Error: TLS handshake failed"
_NO_CONFIG = re.compile(r"client-config-dir authentication failed")
_TLS_CRYPT = re.compile(r"tls-crypt unwrapping failed|TLS Error: tls-crypt", re.IGNORECASE)


def classify_line(line: str) -> tuple[str, str | None] | None:
    """(kind, peer) for a line that reports a failure, else None; kind is a reason or `handshake`."""
    peer_match = _PEER.match(line)
    peer = peer_match.group(1) if peer_match else None
    if _CERTIFICATE.search(line):
        return "certificate", peer
    if _HANDSHAKE in line:
        return "handshake", peer
    if _NO_CONFIG.search(line):
        return "no_config", peer
    if _TLS_CRYPT.search(line):
        return "tls_crypt", peer
    return None


class ErrorTally:
    """Connection errors by reason, one per failed attempt (a handshake failure right after a certificate error
    of the same peer is that same attempt)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter({reason: 0 for reason in REASONS})
        self._refused: OrderedDict[str, None] = OrderedDict()

    def feed(self, line: str) -> None:
        found = classify_line(line)
        if found is None:
            return
        kind, peer = found
        if kind == "handshake":
            if peer is not None and peer in self._refused:
                del self._refused[peer]
                return
            kind = "tls"
        elif kind in ("certificate", "no_config") and peer is not None:
            self._refused[peer] = None
            while len(self._refused) > 4096:  # peers whose handshake-failed line never came
                self._refused.popitem(last=False)
        self.counts[kind] += 1


class LogScanner:
    """Follows a log file across scans: reads only what was appended, starts over when the file was replaced
    (rotation: another inode) or truncated (smaller, or its first bytes changed: truncated and written past the
    old end between two scans). Starts at the file's current end: errors before the service started are not its."""

    _FINGERPRINT = 64

    def __init__(self, path: Path, tally: ErrorTally | None = None) -> None:
        self.path = path
        self.tally = tally or ErrorTally()
        self._partial = b""
        self._inode: int | None = None
        self._offset = 0
        self._head = b""
        try:
            with open(self.path, "rb") as handle:
                self._inode = os.fstat(handle.fileno()).st_ino
                self._head = handle.read(self._FINGERPRINT)
                self._offset = handle.seek(0, os.SEEK_END)
        except FileNotFoundError:
            pass

    def scan(self) -> Counter[str]:
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return self.tally.counts
        with handle:
            stat = os.fstat(handle.fileno())
            head = handle.read(self._FINGERPRINT)
            known = self._head[:len(head)]
            if stat.st_ino != self._inode or stat.st_size < self._offset or head[:len(known)] != known:
                self._inode, self._offset, self._partial = stat.st_ino, 0, b""
            self._head = head
            if stat.st_size > self._offset:
                handle.seek(self._offset)
                data = handle.read(stat.st_size - self._offset)
                self._offset += len(data)
                *lines, self._partial = (self._partial + data).split(b"\n")
                for line in lines:
                    self.tally.feed(line.decode(errors="replace"))
        return self.tally.counts
