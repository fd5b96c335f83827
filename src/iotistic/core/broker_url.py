"""MQTT broker URLs (`MQTT_BROKER_URL`, what registration hands devices): one parser for every part."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

_TLS_SCHEMES = ("mqtts", "ssl", "tls")
_PLAIN_SCHEMES = ("mqtt", "tcp")


class BrokerAddress(NamedTuple):
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host[:1883]`, `mqtts://host[:8883]` (also `tcp://`, `ssl://`, or a bare `host[:port]`).

    Raises ValueError with a readable reason."""
    text = url.strip()
    if "://" not in text:
        text = f"mqtt://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {url!r} is not valid (expected mqtt://host:port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _TLS_SCHEMES + _PLAIN_SCHEMES:
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: expected mqtt://host:port with nothing after it")
    tls = scheme in _TLS_SCHEMES
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)
