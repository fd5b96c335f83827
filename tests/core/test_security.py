"""Hashing of passwords, generated secrets and MQTT passwords (iotistic.core.security)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from iotistic.core.security import (
    MOSQUITTO_PBKDF2_ITERATIONS,
    burn_password_check,
    hash_password,
    hash_token,
    mosquitto_password_hash,
    new_token,
    tokens_equal,
    verify_mosquitto_password,
    verify_password,
)

MOSQUITTO_FORMAT = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$")


# Passwords (Argon2id) ---------------------------------------------------------------------------------------

def test_password_hash_is_argon2id_and_verifies():
    stored = hash_password("correct-horse-battery-staple")
    assert stored.startswith("$argon2id$")
    assert "correct-horse-battery-staple" not in stored
    assert verify_password(stored, "correct-horse-battery-staple") is True


def test_password_hash_cost_is_production_grade(tmp_path):
    """The default cost is at least the OWASP minimum for Argon2id (19 MiB, 2 iterations); RFC 9106's low-memory
    choice is 64 MiB, t=3. (API tests run with ARGON2_* set to the smallest cost, which create_app applies.)"""
    from iotistic.core.security import configure_password_hashing
    from iotistic.core.settings import load_cloud_settings

    defaults = load_cloud_settings(IOTISTIC_DATA_DIR=str(tmp_path))
    configure_password_hashing(time_cost=defaults.argon2_time_cost, memory_kib=defaults.argon2_memory_kib,
                               parallelism=defaults.argon2_parallelism)
    params = dict(item.split("=") for item in hash_password("some-password-1").split("$")[3].split(","))
    assert int(params["m"]) >= 19 * 1024
    assert int(params["t"]) >= 2
    assert int(params["p"]) >= 1


def test_wrong_password_does_not_verify():
    stored = hash_password("correct-horse-battery-staple")
    assert verify_password(stored, "correct-horse-battery-stapler") is False
    assert verify_password(stored, "") is False
    assert verify_password(stored, "CORRECT-HORSE-BATTERY-STAPLE") is False


def test_password_hashes_are_salted():
    a, b = hash_password("same password 123"), hash_password("same password 123")
    assert a != b
    assert verify_password(a, "same password 123") and verify_password(b, "same password 123")


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$v=19$m=65536,t=3,p=4$broken", "$7$101$abc$def"])
def test_verify_against_malformed_hash_is_false_not_an_error(stored):
    assert verify_password(stored, "whatever-password") is False


def test_burn_password_check_returns_nothing_and_does_not_raise():
    assert burn_password_check("any password at all") is None


def test_unicode_passwords_round_trip():
    stored = hash_password("pässwörd-ünïcødé-🔑")
    assert verify_password(stored, "pässwörd-ünïcødé-🔑")
    assert not verify_password(stored, "passwort-unicode-🔑")


# Generated secrets (SHA-256) --------------------------------------------------------------------------------

def test_hash_token_is_sha256_hex():
    token = "pk_abcdefghijklmnopqrstuvwxyz"
    digest = hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_token(token) == digest  # deterministic: rows are found by it
    assert hash_token(token + "x") != digest


def test_new_token_prefix_length_and_randomness():
    tokens = {new_token("pk_") for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("pk_")
        body = token.removeprefix("pk_")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", body)
        assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 32  # 256 bits
    assert not new_token().startswith("pk_")
    assert len(new_token(nbytes=16)) < len(new_token(nbytes=32))


def test_tokens_equal():
    assert tokens_equal("abc", "abc")
    assert not tokens_equal("abc", "abd")
    assert not tokens_equal("abc", "abcd")
    assert not tokens_equal("", "a")


# Mosquitto $7$ (PBKDF2-HMAC-SHA512) --------------------------------------------------------------------------

def test_mosquitto_hash_format():
    stored = mosquitto_password_hash("s3cret-mqtt-password")
    match = MOSQUITTO_FORMAT.fullmatch(stored)
    assert match, stored
    iterations, salt_b64, digest_b64 = match.groups()
    assert int(iterations) == MOSQUITTO_PBKDF2_ITERATIONS
    salt = base64.b64decode(salt_b64, validate=True)
    digest = base64.b64decode(digest_b64, validate=True)
    assert len(salt) == 12
    assert len(digest) == 64
    # Standard base64 with padding, as mosquitto_passwd writes it.
    assert len(salt_b64) == 16 and len(digest_b64) == 88
    # The hash is what an independent PBKDF2-HMAC-SHA512 computes (so Mosquitto can check it).
    assert digest == hashlib.pbkdf2_hmac("sha512", b"s3cret-mqtt-password", salt, int(iterations), 64)


def test_mosquitto_round_trip_and_mismatch():
    stored = mosquitto_password_hash("device-password-xyz")
    assert verify_mosquitto_password(stored, "device-password-xyz") is True
    assert verify_mosquitto_password(stored, "device-password-xyZ") is False
    assert verify_mosquitto_password(stored, "") is False


def test_mosquitto_hashes_are_salted():
    a, b = mosquitto_password_hash("same"), mosquitto_password_hash("same")
    assert a != b
    assert a.split("$")[3] != b.split("$")[3]


def test_mosquitto_custom_iterations_are_recorded_and_honoured():
    stored = mosquitto_password_hash("pw-with-iterations", iterations=1000)
    assert stored.startswith("$7$1000$")
    assert verify_mosquitto_password(stored, "pw-with-iterations")
    # Changing the recorded iteration count breaks verification: the count really is used.
    tampered = stored.replace("$7$1000$", "$7$999$", 1)
    assert not verify_mosquitto_password(tampered, "pw-with-iterations")


def test_verify_mosquitto_hash_written_independently():
    """A hash built by hand in Mosquitto's format (as mosquitto_passwd would write it) verifies."""
    salt = bytes(range(12))
    digest = hashlib.pbkdf2_hmac("sha512", b"from-mosquitto-passwd", salt, 101, 64)
    stored = f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_mosquitto_password(stored, "from-mosquitto-passwd")
    assert not verify_mosquitto_password(stored, "something-else")


@pytest.mark.parametrize("stored", [
    "",
    "plain",
    "$6$101$AAAAAAAAAAAAAAAA$AAAA",  # another scheme
    "$7$notanumber$AAAAAAAAAAAAAAAA$AAAA",
    "$7$101$!!!$@@@",
    "$7$101$onlythree",
])
def test_verify_mosquitto_malformed_is_false(stored):
    assert verify_mosquitto_password(stored, "password") is False

