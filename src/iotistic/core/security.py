"""Hashing of secrets and creation of random tokens.

Two kinds of secrets, two schemes:
- passwords chosen by people are guessable, so they get a slow, salted hash (Argon2id);
- secrets we generate (provisioning keys, device API keys, refresh tokens) have 256 bits of entropy, so a
  single SHA-256 is enough to make a stolen table useless, and it lets us find the row by its hash in one
  indexed lookup on the hot path (a device polling its state).
MQTT passwords are hashed in Mosquitto's own PBKDF2-SHA512 format so the broker can check them directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_password_hasher = PasswordHasher()


def configure_password_hashing(*, time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set the Argon2id cost for new hashes (existing hashes keep verifying: the cost is stored in each hash)."""
    global _password_hasher, _DUMMY_PASSWORD_HASH
    _password_hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _DUMMY_PASSWORD_HASH = _password_hasher.hash("not-a-real-password")

# Mosquitto 2.0 password_file: `$7$<iterations>$<b64 salt>$<b64 hash>` (PBKDF2-HMAC-SHA512, 64-byte hash).
MOSQUITTO_PBKDF2_ITERATIONS = 101
# For passwords we generate (192 random bits: device accounts): iterations slow down guessing, and nobody guesses
# 2^192; like the SHA-256 of API keys, one salted round is as safe. It matters because Mosquitto re-hashes every
# connected client's password on each reload (SIGHUP): with 10,000 devices connected that pause measured 565 ms at
# 101 iterations and 44 ms at one (benchmarks/broker_sync.py).
GENERATED_SECRET_PBKDF2_ITERATIONS = 1


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# Verifying against this keeps the time of a login for an unknown user close to that of a known one.
_DUMMY_PASSWORD_HASH = _password_hasher.hash("not-a-real-password")


def burn_password_check(password: str) -> None:
    verify_password(_DUMMY_PASSWORD_HASH, password)


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    """A URL-safe random secret, with an optional readable prefix such as `pk_`."""
    return prefix + secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def mosquitto_password_hash(password: str, *, iterations: int = MOSQUITTO_PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_password(stored: str, password: str) -> bool:
    try:
        _, kind, iterations, salt_b64, digest_b64 = stored.split("$")
        if kind != "7":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(iterations), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)
