"""What the certificate manager does, over the PKI and the OpenVPN server's files; the API routers and the
`iotistic vpn` commands call this and nothing below it."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.serialization import Encoding

from iotistic.vpn.addressing import AddressPlan
from iotistic.vpn.connection_log import LogScanner
from iotistic.vpn.management import ManagementError, kill_client
from iotistic.vpn.pki import DeviceBundle, Lifetimes, Pki, utcnow
from iotistic.vpn.settings import VpnSettings
from iotistic.vpn.status import ConnectedClient, StatusFormatError, parse_status
from iotistic.vpn.store import CertRecord, CertStatus

log = logging.getLogger(__name__)


class CertState(StrEnum):
    valid = "valid"
    expired = "expired"
    revoked = "revoked"


@dataclass(frozen=True)
class CertView:
    record: CertRecord
    state: CertState


@dataclass(frozen=True)
class Revocation:
    certificate: CertView
    # Live sessions of the device ended through the management interface; None when VPN_MANAGEMENT_SOCKET is not
    # set or the server could not be reached (the device is then refused at its next handshake).
    sessions_ended: int | None


@dataclass(frozen=True)
class Issued:
    certificate: CertView
    ovpn: str


@dataclass(frozen=True)
class Connected:
    updated_at: dt.datetime | None
    # True when the status file is missing, unreadable or older than VPN_STATUS_MAX_AGE: the server is not
    # running (or not writing it), so no device counts as connected.
    stale: bool
    clients: list[ConnectedClient]


def make_pki(settings: VpnSettings) -> Pki:
    return Pki(settings.pki_dir, settings.require_passphrase(),
               AddressPlan(settings.network, settings.customer_block),
               Lifetimes(ca_days=settings.ca_days, server_days=settings.server_cert_days,
                         device_days=settings.device_cert_days, crl_days=settings.crl_days))


class VpnService:
    def __init__(self, settings: VpnSettings, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.settings = settings
        self.pki = make_pki(settings)
        self._clock = clock
        self._scanner = LogScanner(settings.log_file)
        self._scan_lock = threading.Lock()

    def check_ready(self) -> None:
        """Raise (ConfigError or a PkiError) unless the PKI exists, the passphrase opens it and devices can be
        told where the server is."""
        self.settings.require_server_host()
        self.pki.check_passphrase()

    # --- certificates -----------------------------------------------------------------------------------------
    def view(self, record: CertRecord) -> CertView:
        if record.status is CertStatus.revoked:
            return CertView(record, CertState.revoked)
        if record.not_after <= self._clock():
            return CertView(record, CertState.expired)
        return CertView(record, CertState.valid)

    def _issued(self, bundle: DeviceBundle) -> Issued:
        return Issued(self.view(bundle.record), self._ovpn(bundle))

    def _ovpn(self, bundle: DeviceBundle) -> str:
        return self.pki.client_config(bundle, self.settings.require_server_host(), self.settings.server_port)

    def issue(self, device_id: str, customer_id: str) -> Issued:
        self.settings.require_server_host()
        return self._issued(self.pki.issue(device_id, customer_id))

    def renew(self, device_id: str) -> Issued:
        self.settings.require_server_host()
        return self._issued(self.pki.renew(device_id))

    def revoke(self, device_id: str, reason: str) -> Revocation:
        record = self.pki.revoke(device_id, reason)
        ended = None
        if self.settings.management_socket:
            try:
                ended = kill_client(self.settings.management_socket, record.common_name)
            except ManagementError as exc:
                log.warning("revoked %s, but could not end its session: %s", record.common_name, exc)
        return Revocation(self.view(record), ended)

    def get(self, device_id: str) -> CertView:
        return self.view(self.pki.certificate(device_id))

    def ovpn(self, device_id: str) -> str:
        return self._ovpn(self.pki.bundle(device_id))

    def list(self, customer_id: str | None = None, state: CertState | None = None) -> list[CertView]:
        views = [self.view(r) for r in self.pki.index().certificates
                 if customer_id is None or r.customer_id == customer_id]
        return [v for v in views if state is None or v.state is state]

    def ca_pem(self) -> str:
        return self.pki.ca_pem()

    def crl(self, encoding: Encoding) -> bytes:
        return self.pki.crl().public_bytes(encoding)

    # --- the server's state -----------------------------------------------------------------------------------
    def connected(self) -> Connected:
        try:
            status = parse_status(self.settings.status_file.read_text(errors="replace"))
        except (FileNotFoundError, StatusFormatError):
            return Connected(None, True, [])
        age = self._clock() - status.updated_at if status.updated_at else None
        if age is None or age > dt.timedelta(seconds=self.settings.status_max_age):
            return Connected(status.updated_at, True, [])
        return Connected(status.updated_at, False, status.clients)

    def connection_errors(self) -> Counter[str]:
        with self._scan_lock:
            return Counter(self._scanner.scan())
