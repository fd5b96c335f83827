"""Customer session tokens (HS256, short-lived) and the operator token check.

The operator token is kept only as its SHA-256 in memory and compared in constant time; a customer token can
never pass for it, nor the other way round (different audiences, and the operator token is not a JWT)."""

from __future__ import annotations

import datetime as dt
import secrets

import jwt

from iotistic.core.security import hash_token, tokens_equal

ALGORITHM = "HS256"
AUDIENCE = "iotistic-billing-customer"


def create_customer_token(secret: str, customer_id: str, *, minutes: int, now: dt.datetime | None = None) -> str:
    issued = now or dt.datetime.now(dt.UTC)
    payload = {
        "sub": customer_id,
        "aud": AUDIENCE,
        "jti": secrets.token_urlsafe(12),
        "iat": issued,
        "exp": issued + dt.timedelta(minutes=minutes),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_customer_token(secret: str, token: str) -> str | None:
    """The customer id of a valid, unexpired token, else None."""
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                             options={"require": ["exp", "sub", "aud"]})
    except jwt.InvalidTokenError:
        return None
    subject = payload.get("sub")
    return subject if isinstance(subject, str) and subject else None


class OperatorToken:
    """BILLING_OPERATOR_TOKEN, held as a hash. Without one configured, nothing matches."""

    def __init__(self, token: str | None) -> None:
        self._hash = hash_token(token) if token else None

    @property
    def configured(self) -> bool:
        return self._hash is not None

    def matches(self, candidate: str) -> bool:
        if self._hash is None:
            return False
        return tokens_equal(hash_token(candidate), self._hash)
