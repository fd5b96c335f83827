"""First run: a one-time link that creates the first owner on an instance without any user.

`iotistic up` (or `iotistic admin setup-link`) makes a token and prints `<base>/setup#token=<token>`; the token sits
in the URL's fragment, which browsers never send, so proxies and access logs do not see it. It has 256 random bits,
only its SHA-256 is stored, it expires, it works once, and not at all once a user exists. Making a new one deletes
the old one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError, conflict
from iotistic.cloud.models import LoginFailure, Role, SetupToken, User
from iotistic.cloud.services import audit, users
from iotistic.core.db import utcnow
from iotistic.core.security import hash_token, new_token
from iotistic.core.settings import CloudSettings

# Failed attempts are kept with the failed logins (one table, one per-address limit) under this pseudo-email,
# which no real address can equal (parentheses are not valid in an unquoted local part).
SETUP_FAILURE_KEY = "(setup)"
FRESH_LINK_HINT = "print a fresh link with `iotistic admin setup-link` (or restart `iotistic up`)"


@dataclass(frozen=True)
class SetupLink:
    token: str
    expires_at: dt.datetime

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/setup#token={self.token}"


async def setup_needed(session: AsyncSession) -> bool:
    return await users.count_users(session) == 0


async def new_setup_link(session: AsyncSession, hours: int) -> SetupLink:
    """Replace any earlier link with a new one (commits). Refused once a user exists."""
    await _serialise(session)
    if not await setup_needed(session):
        raise conflict("a user exists already: the setup link only creates the first owner; log in instead")
    await session.execute(delete(SetupToken))
    token = new_token("st_")
    expires_at = utcnow() + dt.timedelta(hours=hours)
    session.add(SetupToken(token_hash=hash_token(token), expires_at=expires_at))
    audit.record(session, actor="cli", action="setup.link_created", details={"expiresAt": expires_at.isoformat()})
    await session.commit()
    return SetupLink(token, expires_at)


async def _serialise(session: AsyncSession) -> None:
    """One setup at a time. PostgreSQL: a transaction-scoped advisory lock; SQLite's BEGIN IMMEDIATE (see
    iotistic.core.db) already serialises writing transactions."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('iotistic:setup'))"))


async def complete_setup(
    session: AsyncSession, settings: CloudSettings, secret: str, *, token: str, email: str, password: str, ip: str,
) -> tuple[User, users.TokenPair]:
    """Spend the token: create the owner and log them in (commits). Concurrent uses: exactly one wins, since
    they run one after the other and the winner's owner makes every later one find a user."""
    await _serialise(session)
    window_start = utcnow() - dt.timedelta(seconds=settings.login_lockout_seconds)
    failures = await users.recent_failures(session, LoginFailure.ip, ip, window_start)
    if failures >= settings.login_max_failures:
        raise ApiError(429, "too_many_requests", "too many wrong setup links from this address; try again later",
                       headers={"Retry-After": str(settings.login_lockout_seconds)})
    if not await setup_needed(session):
        raise ApiError(410, "setup_done", "this instance is set up already: log in with your account")
    row = await session.scalar(select(SetupToken).where(SetupToken.token_hash == hash_token(token)))
    if row is None:
        session.add(LoginFailure(email=SETUP_FAILURE_KEY, ip=ip))
        audit.record(session, actor="anonymous", action="setup.refused", ip=ip)
        await session.commit()
        raise ApiError(403, "invalid_setup_token",
                       f"this setup link is not valid (mistyped, or replaced by a newer one); {FRESH_LINK_HINT}")
    if row.used_at is not None:
        raise ApiError(410, "setup_token_used", f"this setup link has been used already; {FRESH_LINK_HINT}")
    if row.expires_at <= utcnow():
        raise ApiError(410, "setup_token_expired",
                       f"this setup link expired at {row.expires_at:%Y-%m-%d %H:%M} UTC; {FRESH_LINK_HINT}")
    spent = await session.execute(
        update(SetupToken).where(SetupToken.id == row.id, SetupToken.used_at.is_(None)).values(used_at=utcnow()))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(410, "setup_token_used", f"this setup link has been used already; {FRESH_LINK_HINT}")
    # A weak password or a bad email raises here and the whole transaction, the spent token included, rolls back.
    user = await users.create_user(session, email=email, password=password, role=Role.owner)
    pair = await users.start_session(session, settings, secret, user)
    audit.record(session, actor=user.email, action="setup.owner_created", target_type="user", target_id=user.id,
                 details={"email": user.email, "role": user.role}, ip=ip)
    await session.commit()
    return user, pair
