"""The PKI on disk: CA, server certificate, device certificates (issue, renew, revoke), the CRL and the tls-crypt
key, with the index of issued certificates and each device's fixed address.

Layout of the PKI directory (created 0711: OpenVPN, after dropping root, reaches `ccd/` and `crl.pem` by name
but cannot list the directory):

    ca.crt server.crt crl.pem          public, 0644
    ccd/<common name>                  client-config-dir entries (fixed addresses), 0644
    issued/<serial>.crt                every certificate issued, 0644
    private/                           0700: ca.key, server.key, devices/<serial>.key (encrypted PKCS#8 with
                                       VPN_KEY_PASSPHRASE; deleted when the certificate is revoked or renewed),
                                       tls-crypt.key (OpenVPN reads it as is), all 0600
    index.json                         certificates, customer blocks, CRL number (0600)

Revocation first records the certificate as revoked in the index, then deletes its client-config-dir entry (so
`ccd-exclusive` refuses it at once), then publishes a new CRL built from the index.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotistic.vpn import certs
from iotistic.vpn.addressing import AddressPlan, allocate
from iotistic.vpn.names import check_device_id, device_name
from iotistic.vpn.server_config import ClientBundle, ServerFiles, render_ccd, render_client_config
from iotistic.vpn.store import CertRecord, CertStatus, Index, locked, read_index, write_atomic, write_index

SERVER_NAME = "iotistic-vpn-server"
CA_NAME = "Iotistic VPN CA"


class PkiError(Exception):
    """A PKI operation that cannot be done; the message is meant for the caller."""


class PkiMissing(PkiError):
    pass


class PkiExists(PkiError):
    pass


class WrongPassphrase(PkiError):
    pass


class DeviceNotFound(PkiError):
    pass


class AlreadyIssued(PkiError):
    pass


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class PkiPaths:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def crl(self) -> Path:
        return self.root / "crl.pem"

    @property
    def ccd(self) -> Path:
        return self.root / "ccd"

    @property
    def issued(self) -> Path:
        return self.root / "issued"

    @property
    def private(self) -> Path:
        return self.root / "private"

    @property
    def ca_key(self) -> Path:
        return self.private / "ca.key"

    @property
    def server_key(self) -> Path:
        return self.private / "server.key"

    @property
    def tls_crypt(self) -> Path:
        return self.private / "tls-crypt.key"

    @property
    def device_keys(self) -> Path:
        return self.private / "devices"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def server_files(self) -> ServerFiles:
        return ServerFiles(ca=self.ca_cert, cert=self.server_cert, key=self.server_key, crl=self.crl,
                           tls_crypt=self.tls_crypt, ccd_dir=self.ccd)


@dataclass(frozen=True)
class DeviceBundle:
    record: CertRecord
    cert_pem: str
    key_pem: str  # unencrypted: only ever handed to the device, in its .ovpn


@dataclass(frozen=True)
class Lifetimes:
    ca_days: int = 3650
    server_days: int = 825
    device_days: int = 825
    crl_days: int = 30


class Pki:
    def __init__(self, root: Path, passphrase: str, plan: AddressPlan, lifetimes: Lifetimes | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.paths = PkiPaths(root)
        self._passphrase = passphrase
        self.plan = plan
        self.lifetimes = lifetimes or Lifetimes()
        self._clock = clock

    # --- set-up ---------------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.paths.index.is_file() and self.paths.ca_cert.is_file()

    def initialise(self, server_alt_names: tuple[str, ...] = ()) -> None:
        """Create the CA, the server certificate, the tls-crypt key, an empty CRL and index. Refuses to overwrite."""
        paths = self.paths
        paths.root.mkdir(parents=True, exist_ok=True)
        os.chmod(paths.root, 0o711)  # noqa: S103 - traversable, not listable: OpenVPN as nobody opens ccd/, crl.pem
        with locked(paths.lock):
            if paths.index.exists() or paths.ca_key.exists():
                raise PkiExists(f"a PKI already exists in {paths.root}")
            for directory, mode in ((paths.private, 0o700), (paths.device_keys, 0o700), (paths.ccd, 0o755),
                                    (paths.issued, 0o755)):
                directory.mkdir(exist_ok=True)
                os.chmod(directory, mode)
            now = self._clock()
            ca_key = certs.new_key()
            ca = certs.make_ca(ca_key, CA_NAME, self.lifetimes.ca_days, now)
            issuer = certs.Issuer(ca, ca_key)
            server_key = certs.new_key()
            server = certs.make_leaf(issuer, server_key, SERVER_NAME, server=True, days=self.lifetimes.server_days,
                                     now=now, alt_names=server_alt_names)
            write_atomic(paths.ca_key, certs.encrypt_key(ca_key, self._passphrase))
            write_atomic(paths.server_key, certs.encrypt_key(server_key, self._passphrase))
            write_atomic(paths.tls_crypt, certs.new_tls_crypt_key().encode())
            write_atomic(paths.ca_cert, certs.cert_pem(ca), 0o644)
            write_atomic(paths.server_cert, certs.cert_pem(server), 0o644)
            index = Index(crl_number=1)
            write_index(paths.index, index)
            self._publish_crl(index, issuer, now)

    # --- reading ----------------------------------------------------------------------------------------------------
    def check_passphrase(self) -> None:
        """Decrypt the CA key once: WrongPassphrase now rather than at the first signature."""
        self._require()
        self._load_key(self.paths.ca_key)

    def _require(self) -> None:
        if not self.exists():
            raise PkiMissing(f"no PKI in {self.paths.root}: run `iotistic vpn init-pki` first")

    def index(self) -> Index:
        self._require()
        return read_index(self.paths.index)

    def ca_pem(self) -> str:
        self._require()
        return self.paths.ca_cert.read_text()

    def crl(self) -> x509.CertificateRevocationList:
        self._require()
        return x509.load_pem_x509_crl(self.paths.crl.read_bytes())

    def tls_crypt_key(self) -> str:
        self._require()
        return self.paths.tls_crypt.read_text()

    def server_name(self) -> str:
        cert = x509.load_pem_x509_certificate(self.paths.server_cert.read_bytes())
        return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)

    def certificate(self, device_id: str) -> CertRecord:
        """The device's current certificate, else its latest revoked one; DeviceNotFound if it never had one."""
        check_device_id(device_id)
        index = self.index()
        record = index.active(device_id)
        if record is None:
            history = [r for r in index.certificates if r.device_id == device_id]
            if not history:
                raise DeviceNotFound(f"device {device_id!r} has no certificate")
            record = max(history, key=lambda r: r.not_before)
        return record

    def bundle(self, device_id: str) -> DeviceBundle:
        """The device's valid certificate and its private key (decrypted), e.g. to render its .ovpn again."""
        check_device_id(device_id)
        record = self.index().active(device_id)
        if record is None:
            raise DeviceNotFound(f"device {device_id!r} has no valid certificate")
        key = self._load_key(self.paths.device_keys / f"{record.serial}.key")
        cert = (self.paths.issued / f"{record.serial}.crt").read_text()
        return DeviceBundle(record, cert, certs.plain_key_pem(key).decode())

    def client_config(self, bundle: DeviceBundle, remote_host: str, remote_port: int) -> str:
        return render_client_config(ClientBundle(
            remote_host=remote_host, remote_port=remote_port, server_name=self.server_name(), ca_pem=self.ca_pem(),
            cert_pem=bundle.cert_pem, key_pem=bundle.key_pem, tls_crypt_key=self.tls_crypt_key()))

    # --- changes ----------------------------------------------------------------------------------------------------
    def issue(self, device_id: str, customer_id: str) -> DeviceBundle:
        """A certificate and a fixed address for a device that has no valid certificate."""
        name = device_name(device_id, customer_id)
        self._require()
        with locked(self.paths.lock):
            index = read_index(self.paths.index)
            current = index.active(device_id)
            if current is not None:
                raise AlreadyIssued(f"device {device_id!r} already has a valid certificate (serial {current.serial}, "
                                    f"customer {current.customer_id}): renew or revoke it")
            used = {ipaddress.IPv4Address(r.address) for r in index.certificates if r.status is CertStatus.valid}
            allocation = allocate(self.plan, index.customer_blocks, used, customer_id)
            if allocation.new_block:
                index.customer_blocks.setdefault(customer_id, []).append(allocation.block)
            bundle = self._sign_device(index, name.device_id, name.customer_id, allocation.address)
            write_index(self.paths.index, index)
            return bundle

    def renew(self, device_id: str) -> DeviceBundle:
        """A new certificate (new key, new serial) for the same device, customer and address; the old one is
        revoked as superseded, so only the new configuration connects from now on."""
        check_device_id(device_id)
        self._require()
        with locked(self.paths.lock):
            index = read_index(self.paths.index)
            current = index.active(device_id)
            if current is None:
                raise DeviceNotFound(f"device {device_id!r} has no valid certificate to renew")
            now = self._clock()
            current.status, current.revoked_at, current.reason = CertStatus.revoked, now, "superseded"
            bundle = self._sign_device(index, current.device_id, current.customer_id,
                                       ipaddress.IPv4Address(current.address))
            index.crl_number += 1
            write_index(self.paths.index, index)
            self._drop_key(current.serial)
            self._publish_crl(index, self._issuer(), now)
            return bundle

    def revoke(self, device_id: str, reason: str = "unspecified") -> CertRecord:
        check_device_id(device_id)
        if reason not in certs.REASONS or reason == "superseded":
            raise PkiError(f"reason must be one of {', '.join(r for r in certs.REASONS if r != 'superseded')}")
        self._require()
        with locked(self.paths.lock):
            index = read_index(self.paths.index)
            record = index.active(device_id)
            if record is None:
                raise DeviceNotFound(f"device {device_id!r} has no valid certificate to revoke")
            now = self._clock()
            record.status, record.revoked_at, record.reason = CertStatus.revoked, now, reason
            index.crl_number += 1
            write_index(self.paths.index, index)
            (self.paths.ccd / record.common_name).unlink(missing_ok=True)
            self._drop_key(record.serial)
            self._publish_crl(index, self._issuer(), now)
            return record

    def refresh_crl_if_due(self) -> bool:
        """Re-sign the CRL when less than half of its validity is left (OpenVPN refuses everyone once it expires)."""
        self._require()
        with locked(self.paths.lock):
            crl = self.crl()
            now = self._clock()
            next_update = crl.next_update_utc
            if next_update is not None and next_update - now > dt.timedelta(days=self.lifetimes.crl_days / 2):
                return False
            index = read_index(self.paths.index)
            index.crl_number += 1
            write_index(self.paths.index, index)
            self._publish_crl(index, self._issuer(), now)
            return True

    # --- internals --------------------------------------------------------------------------------------------------
    def _load_key(self, path: Path) -> certs.PrivateKey:
        try:
            return certs.decrypt_key(path.read_bytes(), self._passphrase)
        except ValueError:
            raise WrongPassphrase(f"cannot decrypt {path.name}: wrong VPN_KEY_PASSPHRASE?") from None

    def _drop_key(self, serial: str) -> None:
        """A revoked certificate's key is never handed out again: keep no copy of it."""
        (self.paths.device_keys / f"{serial}.key").unlink(missing_ok=True)

    def _issuer(self) -> certs.Issuer:
        ca = x509.load_pem_x509_certificate(self.paths.ca_cert.read_bytes())
        return certs.Issuer(ca, self._load_key(self.paths.ca_key))

    def _sign_device(self, index: Index, device_id: str, customer_id: str,
                     address: ipaddress.IPv4Address) -> DeviceBundle:
        """Sign, store the certificate, key and client-config-dir entry, and add the record to `index` (which the
        caller writes)."""
        name = device_name(device_id, customer_id)
        issuer = self._issuer()
        key = certs.new_key()
        cert = certs.make_leaf(issuer, key, name.common_name, server=False, days=self.lifetimes.device_days,
                               now=self._clock())
        serial = format(cert.serial_number, "x")
        cert_text = certs.cert_pem(cert)
        write_atomic(self.paths.issued / f"{serial}.crt", cert_text, 0o644)
        write_atomic(self.paths.device_keys / f"{serial}.key", certs.encrypt_key(key, self._passphrase))
        write_atomic(self.paths.ccd / name.common_name,
                     render_ccd(name.common_name, customer_id, address, self.plan).encode(), 0o644)
        record = CertRecord(serial=serial, device_id=device_id, customer_id=customer_id,
                            common_name=name.common_name, address=str(address),
                            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)
        index.certificates.append(record)
        return DeviceBundle(record, cert_text.decode(), certs.plain_key_pem(key).decode())

    def _publish_crl(self, index: Index, issuer: certs.Issuer, now: dt.datetime) -> None:
        """Sign a CRL of every revoked certificate not yet expired, numbered `index.crl_number` (the caller has
        counted it up and written the index first), and replace crl.pem."""
        revoked = [certs.Revoked(int(r.serial, 16), r.revoked_at or now, r.reason or "unspecified")
                   for r in index.certificates
                   if r.status is CertStatus.revoked and r.not_after > now]
        crl = certs.make_crl(issuer, revoked, index.crl_number, now, self.lifetimes.crl_days)
        previous = self.paths.crl.stat().st_mtime if self.paths.crl.exists() else None
        write_atomic(self.paths.crl, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        if previous is not None and int(self.paths.crl.stat().st_mtime) <= int(previous):
            # OpenVPN reloads the CRL when its mtime (whole seconds) or size changes: a second CRL within the same
            # second and of the same size would go unnoticed, so step the mtime past the previous one.
            stamp = int(previous) + 1
            os.utime(self.paths.crl, (stamp, stamp))
