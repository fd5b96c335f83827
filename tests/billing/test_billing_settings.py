"""Billing settings: the signing key from the environment or a mounted file, checked when loaded."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from iotistic.billing.settings import load_billing_settings
from iotistic.core.settings import ConfigError
from tests.conftest import LicenseKeys


def test_key_from_text_or_mounted_file_gives_the_public_key(tmp_path: Path, license_keys: LicenseKeys) -> None:
    from_env = load_billing_settings(BILLING_PRIVATE_KEY=license_keys.private_pem)
    assert from_env.public_key_pem == license_keys.public_pem
    # A PEM squeezed into one line of an .env file, with literal \n.
    one_line = load_billing_settings(BILLING_PRIVATE_KEY=license_keys.private_pem.replace("\n", "\\n"))
    assert one_line.public_key_pem == license_keys.public_pem
    mounted = tmp_path / "key.pem"
    mounted.write_text(license_keys.private_pem)
    from_file = load_billing_settings(BILLING_PRIVATE_KEY_FILE=str(mounted))
    assert from_file.private_key_pem() == license_keys.private_pem
    # The key is a secret: not in the settings' repr.
    assert "PRIVATE KEY" not in repr(from_env)


def test_key_problems_are_one_clear_line(tmp_path: Path, license_keys: LicenseKeys) -> None:
    with pytest.raises(ConfigError, match="BILLING_PRIVATE_KEY or BILLING_PRIVATE_KEY_FILE, not both"):
        load_billing_settings(BILLING_PRIVATE_KEY=license_keys.private_pem, BILLING_PRIVATE_KEY_FILE="/x")
    with pytest.raises(ConfigError, match="cannot read"):
        load_billing_settings(BILLING_PRIVATE_KEY_FILE=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_billing_settings(BILLING_PRIVATE_KEY=license_keys.public_pem)
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ConfigError, match="must be RSA"):
        load_billing_settings(BILLING_PRIVATE_KEY=ec_key)
    with pytest.raises(ConfigError, match="no licence signing key"):
        load_billing_settings(require_key=True)
    # Without require_key a service may start (e.g. to migrate) and report the missing key when it needs it.
    settings = load_billing_settings()
    with pytest.raises(ConfigError, match="no licence signing key"):
        settings.private_key_pem()


def test_other_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BILLING_DATABASE_URL"):
        load_billing_settings(BILLING_DATABASE_URL="mysql://db/billing")
    with pytest.raises(ConfigError, match="BILLING_INGRESS_DOMAIN"):
        load_billing_settings(BILLING_INGRESS_DOMAIN="Customers.Example")
    with pytest.raises(ConfigError, match="BILLING_OPERATOR_TOKEN"):
        load_billing_settings(BILLING_OPERATOR_TOKEN="short")
    with pytest.raises(ConfigError, match="BACKOFF_MAX"):
        load_billing_settings(BILLING_QUEUE_BACKOFF_SECONDS=60, BILLING_QUEUE_BACKOFF_MAX_SECONDS=10)
    settings = load_billing_settings(BILLING_DATABASE_URL="postgres://u@db/billing", BILLING_DATA_DIR=str(tmp_path))
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@db/billing"
    assert load_billing_settings(BILLING_DATA_DIR=str(tmp_path)).sqlalchemy_url.endswith("/billing.db")


def test_the_session_secret_is_made_once_and_private(tmp_path: Path) -> None:
    settings = load_billing_settings(BILLING_DATA_DIR=str(tmp_path / "data"))
    first = settings.resolved_jwt_secret()
    assert len(first) >= 32
    assert stat.S_IMODE((tmp_path / "data" / "jwt-secret").stat().st_mode) == 0o600
    assert load_billing_settings(BILLING_DATA_DIR=str(tmp_path / "data")).resolved_jwt_secret() == first
