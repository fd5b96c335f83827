"""X.509 building blocks (pure: keys, certificates and CRLs in memory, no files).

Keys are EC P-256: OpenVPN 2.6 handles them, and generating one takes a millisecond where RSA 3072 takes about a
second, which matters when a fleet registers at once. Every certificate has a random 159-bit serial (RFC 5280
allows up to 20 octets; 159 bits keep it positive) and is signed with ECDSA-SHA256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates start a little in the past so a device whose clock is a few minutes behind accepts them.
BACKDATE = dt.timedelta(minutes=5)
SIGNATURE_HASH = hashes.SHA256()
PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def random_serial() -> int:
    """159 random bits, never 0 (a serial must be positive)."""
    return secrets.randbits(159) or 1


def encrypt_key(key: PrivateKey, passphrase: str) -> bytes:
    """PKCS#8 PEM encrypted with the passphrase (PBES2: PBKDF2-SHA256 and AES-256-CBC; OpenSSL and OpenVPN read it)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(passphrase.encode()))


def decrypt_key(pem: bytes, passphrase: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=passphrase.encode())
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an EC private key")
    return key


def plain_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, only for a device's own .ovpn (the device must start OpenVPN unattended)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def make_ca(key: PrivateKey, common_name: str, days: int, now: dt.datetime) -> x509.Certificate:
    name = _name(common_name, "Iotistic")
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public).serial_number(random_serial())
        .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
        # path_length 0: the CA signs end-entity certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, SIGNATURE_HASH)
    )


@dataclass(frozen=True)
class Issuer:
    cert: x509.Certificate
    key: PrivateKey


def make_leaf(issuer: Issuer, key: PrivateKey, common_name: str, *, server: bool, days: int, now: dt.datetime,
              alt_names: Iterable[str] = ()) -> x509.Certificate:
    """A server (EKU serverAuth) or device (EKU clientAuth) certificate signed by the CA."""
    public = key.public_key()
    not_after = min(now + dt.timedelta(days=days), issuer.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(issuer.cert.subject).public_key(public)
        .serial_number(random_serial())
        .not_valid_before(now - BACKDATE).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    names = [_general_name(name) for name in alt_names]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer.key, SIGNATURE_HASH)


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
}


@dataclass(frozen=True)
class Revoked:
    serial: int
    revoked_at: dt.datetime
    reason: str


def make_crl(issuer: Issuer, revoked: Iterable[Revoked], number: int, now: dt.datetime,
             days: int) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject).last_update(now - BACKDATE).next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    for entry in revoked:
        item = (x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
                .add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False).build())
        builder = builder.add_revoked_certificate(item)
    return builder.sign(issuer.key, SIGNATURE_HASH)


def new_tls_crypt_key() -> str:
    """An OpenVPN static key (2048 random bits in OpenVPN's own text format) for --tls-crypt."""
    data = secrets.token_hex(256)
    lines = [data[i:i + 32] for i in range(0, len(data), 32)]
    return "\n".join(["-----BEGIN OpenVPN Static key V1-----", *lines, "-----END OpenVPN Static key V1-----", ""])
