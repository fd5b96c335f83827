"""Short-lived access tokens for users (HS256 JWTs signed with the instance's secret)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
AUDIENCE = "iotistic-api"


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: str
    role: str


def create_access_token(secret: str, *, user_id: int, session_id: str, role: str, minutes: int) -> str:
    now = dt.datetime.now(dt.UTC)
    payload = {
        "sub": str(user_id),
        "sid": session_id,
        "role": role,
        "aud": AUDIENCE,
        "jti": secrets.token_urlsafe(12),  # every token distinct, even two issued in the same second
        "iat": now,
        "exp": now + dt.timedelta(minutes=minutes),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_access_token(secret: str, token: str) -> AccessClaims | None:
    """The claims of a valid, unexpired token, else None."""
    try:
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, options={"require": ["exp", "sub", "sid"]}
        )
        return AccessClaims(user_id=int(payload["sub"]), session_id=str(payload["sid"]), role=str(payload["role"]))
    except (jwt.InvalidTokenError, KeyError, ValueError):
        return None
