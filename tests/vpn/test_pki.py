"""The PKI checked from outside with the openssl command: chains and purposes, the CRL, encrypted keys."""

from __future__ import annotations

import datetime as dt
import re
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotistic.vpn.addressing import AddressPlan
from iotistic.vpn.names import InvalidName
from iotistic.vpn.pki import AlreadyIssued, DeviceNotFound, Pki, PkiError, PkiExists, PkiMissing, WrongPassphrase
from tests.vpn.conftest import PASSPHRASE, make_pki


def openssl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=stdin, timeout=30, check=False)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_device_certificate_verifies_as_client_only(pki: Pki, tmp_path: Path) -> None:
    bundle = pki.issue("dev-1", "cust1")
    cert = _write(tmp_path, "dev.crt", bundle.cert_pem)
    ca = str(pki.paths.ca_cert)
    ok = openssl("verify", "-CAfile", ca, "-purpose", "sslclient", cert)
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": OK"), ok.stderr
    wrong = openssl("verify", "-CAfile", ca, "-purpose", "sslserver", cert)
    assert wrong.returncode != 0 and "unsuitable certificate purpose" in wrong.stdout + wrong.stderr
    text = openssl("x509", "-in", cert, "-noout", "-subject", "-ext", "extendedKeyUsage,basicConstraints").stdout
    assert "CN = device-dev-1-cust1" in text and "TLS Web Client Authentication" in text and "CA:FALSE" in text


def test_server_certificate_verifies_as_server_only(pki: Pki) -> None:
    ca, server = str(pki.paths.ca_cert), str(pki.paths.server_cert)
    assert openssl("verify", "-CAfile", ca, "-purpose", "sslserver", server).returncode == 0
    assert openssl("verify", "-CAfile", ca, "-purpose", "sslclient", server).returncode != 0
    cert = x509.load_pem_x509_certificate(pki.paths.server_cert.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])


def test_a_certificate_from_another_ca_does_not_verify(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    cert = _write(tmp_path, "foreign.crt", other.issue("dev-1", "cust1").cert_pem)
    result = openssl("verify", "-CAfile", str(pki.paths.ca_cert), "-purpose", "sslclient", cert)
    assert result.returncode != 0 and "unable to get local issuer certificate" in result.stdout + result.stderr


def test_serials_are_random_159_bit_and_distinct(pki: Pki) -> None:
    serials = [int(pki.issue(f"dev-{i}", "cust1").record.serial, 16) for i in range(8)]
    assert len(set(serials)) == 8
    assert all(0 < s < 2**159 for s in serials)
    assert max(s.bit_length() for s in serials) > 150  # random, not counted up from 1


def test_revocation_publishes_a_crl_that_openssl_reads_and_enforces(pki: Pki, tmp_path: Path) -> None:
    kept = pki.issue("dev-keep", "cust1")
    gone = pki.issue("dev-gone", "cust1")
    pki.revoke("dev-gone", "key_compromise")
    crl_text = openssl("crl", "-in", str(pki.paths.crl), "-noout", "-text")
    assert crl_text.returncode == 0, crl_text.stderr
    listed = {int(serial, 16) for serial in re.findall(r"Serial Number: ([0-9A-F]+)", crl_text.stdout)}
    assert listed == {int(gone.record.serial, 16)}
    assert "Key Compromise" in crl_text.stdout and "Issuer: O = Iotistic, CN = Iotistic VPN CA" in crl_text.stdout
    # The CRL is signed by the CA ...
    assert openssl("crl", "-in", str(pki.paths.crl), "-noout", "-CAfile", str(pki.paths.ca_cert)).returncode == 0
    # ... and a verifier that checks it refuses the revoked certificate and accepts the other.
    ca, crl = str(pki.paths.ca_cert), str(pki.paths.crl)
    refused = openssl("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, _write(tmp_path, "g.crt", gone.cert_pem))
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    accepted = openssl("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, _write(tmp_path, "k.crt", kept.cert_pem))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    # Its key is deleted, and the fixed-address entry is gone, so OpenVPN's ccd-exclusive refuses it too.
    assert not (pki.paths.device_keys / f"{gone.record.serial}.key").exists()
    assert (pki.paths.device_keys / f"{kept.record.serial}.key").exists()
    assert not (pki.paths.ccd / gone.record.common_name).exists()
    assert (pki.paths.ccd / kept.record.common_name).exists()


def test_crl_numbers_increase_and_der_matches_pem(pki: Pki, tmp_path: Path) -> None:
    def number() -> int:
        return pki.crl().extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    first = number()
    pki.issue("dev-1", "cust1")
    assert number() == first  # issuing does not touch the CRL
    pki.revoke("dev-1")
    assert number() == first + 1 == pki.index().crl_number
    der = tmp_path / "crl.der"
    der.write_bytes(pki.crl().public_bytes(Encoding.DER))
    shown = openssl("crl", "-inform", "DER", "-in", str(der), "-noout", "-crlnumber", "-CAfile",
                    str(pki.paths.ca_cert))
    assert shown.returncode == 0 and f"crlNumber=0x{first + 1:02X}" in shown.stdout, shown.stdout + shown.stderr


def test_private_keys_are_encrypted_and_private(pki: Pki, tmp_path: Path) -> None:
    bundle = pki.issue("dev-1", "cust1")
    device_key = pki.paths.device_keys / f"{bundle.record.serial}.key"
    for path in (pki.paths.ca_key, pki.paths.server_key, device_key, pki.paths.tls_crypt, pki.paths.index):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(pki.paths.private.stat().st_mode) == 0o700
    for path in (pki.paths.ca_key, pki.paths.server_key, device_key):
        assert path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert openssl("pkey", "-in", str(path), "-passin", "pass:not-the-passphrase", "-noout").returncode != 0
        assert openssl("pkey", "-in", str(path), "-passin", f"pass:{PASSPHRASE}", "-noout").returncode == 0
    # Public parts are readable by OpenVPN after it drops to nobody.
    for path in (pki.paths.ca_cert, pki.paths.crl, pki.paths.ccd / bundle.record.common_name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(pki.paths.root.stat().st_mode) == 0o711


def test_wrong_passphrase_is_refused_before_signing(pki: Pki) -> None:
    locked = Pki(pki.paths.root, "another-passphrase-123", pki.plan)
    with pytest.raises(WrongPassphrase):
        locked.check_passphrase()
    with pytest.raises(WrongPassphrase):
        locked.issue("dev-1", "cust1")
    assert pki.index().certificates == []  # nothing half-issued


def test_tls_crypt_key_is_an_openvpn_static_key(pki: Pki) -> None:
    lines = pki.tls_crypt_key().strip().splitlines()
    assert lines[0] == "-----BEGIN OpenVPN Static key V1-----" and lines[-1] == "-----END OpenVPN Static key V1-----"
    body = "".join(lines[1:-1])
    assert len(lines) == 18 and len(body) == 512 and int(body, 16) > 0


def test_renewal_keeps_the_address_and_supersedes_the_old_certificate(pki: Pki) -> None:
    old = pki.issue("dev-1", "cust1")
    new = pki.renew("dev-1")
    assert new.record.address == old.record.address and new.record.serial != old.record.serial
    assert new.cert_pem != old.cert_pem and new.key_pem != old.key_pem
    assert sorted(p.name for p in pki.paths.device_keys.iterdir()) == [f"{new.record.serial}.key"]
    records = {r.serial: r for r in pki.index().certificates}
    assert records[old.record.serial].status == "revoked" and records[old.record.serial].reason == "superseded"
    revoked = pki.crl().get_revoked_certificate_by_serial_number(int(old.record.serial, 16))
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    assert pki.certificate("dev-1").serial == new.record.serial
    assert (pki.paths.ccd / "device-dev-1-cust1").read_text().count(old.record.address) == 1


def test_one_valid_certificate_per_device(pki: Pki) -> None:
    pki.issue("dev-1", "cust1")
    with pytest.raises(AlreadyIssued):
        pki.issue("dev-1", "cust1")
    with pytest.raises(AlreadyIssued):
        pki.issue("dev-1", "cust2")  # a device id names one device, whatever the customer
    pki.revoke("dev-1")
    again = pki.issue("dev-1", "cust2")  # after revocation it may be issued again (moved to another customer)
    assert again.record.customer_id == "cust2" and again.record.address.startswith("10.8.0.3")


def test_unknown_devices_and_reasons(pki: Pki) -> None:
    with pytest.raises(DeviceNotFound):
        pki.revoke("nobody-here")
    with pytest.raises(DeviceNotFound):
        pki.renew("nobody-here")
    with pytest.raises(DeviceNotFound):
        pki.certificate("nobody-here")
    pki.issue("dev-1", "cust1")
    with pytest.raises(PkiError, match="reason must be one of"):
        pki.revoke("dev-1", "because")
    pki.revoke("dev-1")
    with pytest.raises(DeviceNotFound):
        pki.revoke("dev-1")  # already revoked
    with pytest.raises(DeviceNotFound):
        pki.bundle("dev-1")
    assert pki.certificate("dev-1").status == "revoked"  # the history stays visible


@pytest.mark.parametrize(("device", "customer"), [
    ("../../etc/passwd", "cust1"), ("dev/1", "cust1"), ("-dev", "cust1"), ("dev 1", "cust1"), ("", "cust1"),
    ("dev-1", "cust-1"), ("dev-1", "../x"), ("dev-1", ""), ("dév", "cust1"), ("a" * 50, "b" * 8),
    ("dev\n1", "cust1"),
])
def test_ids_that_could_escape_a_common_name_or_file_name_are_refused(pki: Pki, device: str,
                                                                       customer: str) -> None:
    with pytest.raises(InvalidName):
        pki.issue(device, customer)
    assert sorted(p.name for p in pki.paths.ccd.iterdir()) == []


def test_common_name_and_validity(pki: Pki) -> None:
    device = "3f2b1c9e-4a5d-4e6f-8a7b-9c0d1e2f3a4b"  # a UUID: hyphens in the device id are fine
    bundle = pki.issue(device, "c0123456789ab")
    cert = x509.load_pem_x509_certificate(bundle.cert_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"device-{device}-c0123456789ab"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc) > dt.timedelta(days=824)
    assert cert.not_valid_before_utc < dt.datetime.now(dt.UTC)


def test_init_refuses_to_overwrite_and_missing_pki_is_reported(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ca_before = pki.paths.ca_cert.read_bytes()
    with pytest.raises(PkiExists):
        pki.initialise()
    assert pki.paths.ca_cert.read_bytes() == ca_before
    empty = Pki(tmp_path / "none", PASSPHRASE, AddressPlan.from_strings("10.8.0.0", "255.255.255.0", 16))
    with pytest.raises(PkiMissing, match="init-pki"):
        empty.issue("dev-1", "cust1")


def test_crl_is_resigned_when_half_its_validity_is_gone(tmp_path: Path) -> None:
    now = [dt.datetime.now(dt.UTC)]
    pki = Pki(tmp_path / "pki", PASSPHRASE, AddressPlan.from_strings("10.8.0.0", "255.255.255.0", 16),
              clock=lambda: now[0])
    pki.initialise()
    first = pki.crl().next_update_utc
    assert pki.refresh_crl_if_due() is False
    now[0] += dt.timedelta(days=16)
    assert pki.refresh_crl_if_due() is True
    assert pki.crl().next_update_utc is not None and first is not None
    assert pki.crl().next_update_utc - first >= dt.timedelta(days=15)
