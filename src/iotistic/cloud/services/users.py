"""Users, logins, sessions and refresh-token rotation."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from iotistic.cloud.errors import ApiError, conflict, forbidden, not_found, unauthorized
from iotistic.cloud.models import LoginFailure, RefreshToken, Role, User, UserSession
from iotistic.cloud.services import audit
from iotistic.core.db import utcnow
from iotistic.core.security import burn_password_check, hash_password, hash_token, new_token, verify_password
from iotistic.core.settings import CloudSettings
from iotistic.core.tokens import create_access_token

MIN_PASSWORD_LENGTH = 10


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ApiError(422, "weak_password", f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() == "" or len(set(password)) < 4:
        raise ApiError(422, "weak_password", "password is too simple")


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def create_user(session: AsyncSession, *, email: str, password: str, role: Role) -> User:
    check_password_strength(password)
    email = normalise_email(email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise conflict(f"a user with email {email} exists")
    # Argon2 takes tens of milliseconds of CPU on purpose: off the event loop so other requests go on.
    password_hash = await asyncio.to_thread(hash_password, password)
    user = User(email=email, password_hash=password_hash, role=role.value, is_active=True)
    session.add(user)
    await session.flush()
    return user


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


async def _issue(session: AsyncSession, settings: CloudSettings, secret: str, user: User,
                 user_session: UserSession) -> TokenPair:
    refresh = new_token("rt_")
    session.add(RefreshToken(session_id=user_session.id, token_hash=hash_token(refresh)))
    access = create_access_token(secret, user_id=user.id, session_id=user_session.id, role=user.role,
                                 minutes=settings.access_token_minutes)
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=settings.access_token_minutes * 60)


async def start_session(session: AsyncSession, settings: CloudSettings, secret: str, user: User) -> TokenPair:
    """A new login session for `user` and its first token pair (the caller commits)."""
    user.last_login_at = utcnow()
    user_session = UserSession(id=str(uuid.uuid4()), user_id=user.id,
                               expires_at=utcnow() + dt.timedelta(days=settings.refresh_token_days))
    session.add(user_session)
    await session.flush()
    return await _issue(session, settings, secret, user, user_session)


async def recent_failures(session: AsyncSession, column: InstrumentedAttribute[str], value: str,
                           since: dt.datetime) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(LoginFailure).where(column == value, LoginFailure.at >= since)
        ) or 0
    )


async def login(
    session: AsyncSession, settings: CloudSettings, secret: str, *, email: str, password: str, ip: str,
) -> TokenPair:
    """Check the password, rate limited per email and per client address; commits."""
    email = normalise_email(email)
    if session.get_bind().dialect.name == "postgresql":
        # One login attempt per email at a time, so parallel guesses cannot all pass the count below before
        # any failure is recorded (SQLite's BEGIN IMMEDIATE serialises them already).
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"login:{email}"})
    window_start = utcnow() - dt.timedelta(seconds=settings.login_lockout_seconds)
    by_email = await recent_failures(session, LoginFailure.email, email, window_start)
    by_ip = await recent_failures(session, LoginFailure.ip, ip, window_start)
    if by_email >= settings.login_max_failures or by_ip >= settings.login_max_failures * 4:
        raise ApiError(429, "too_many_requests", "too many failed logins; try again later",
                       headers={"Retry-After": str(settings.login_lockout_seconds)})
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        await asyncio.to_thread(burn_password_check, password)
        valid = False
    else:
        valid = await asyncio.to_thread(verify_password, user.password_hash, password)
    if user is None or not valid or not user.is_active:
        session.add(LoginFailure(email=email, ip=ip))
        audit.record(session, actor=email, action="auth.login_failed", ip=ip)
        await session.commit()
        raise unauthorized("email or password is wrong")
    await session.execute(delete(LoginFailure).where(LoginFailure.email == email))
    pair = await start_session(session, settings, secret, user)
    audit.record(session, actor=email, action="auth.login", target_type="user", target_id=user.id, ip=ip)
    await session.commit()
    return pair


async def refresh(session: AsyncSession, settings: CloudSettings, secret: str, token: str) -> TokenPair:
    """Rotate: the presented refresh token is spent; presenting a spent one ends the whole session."""
    row = (
        await session.execute(
            select(RefreshToken, UserSession, User)
            .join(UserSession, UserSession.id == RefreshToken.session_id)
            .join(User, User.id == UserSession.user_id)
            .where(RefreshToken.token_hash == hash_token(token))
        )
    ).first()
    if row is None:
        raise unauthorized("refresh token invalid")
    stored, user_session, user = row
    if user_session.revoked_at is not None or user_session.expires_at <= utcnow() or not user.is_active:
        raise unauthorized("session ended")
    # Mark it used only if nobody else did first: two concurrent refreshes cannot both succeed.
    spent = await session.execute(
        update(RefreshToken).where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        user_session.revoked_at = utcnow()
        audit.record(session, actor=user.email, action="auth.refresh_reuse", target_type="session",
                     target_id=user_session.id)
        await session.commit()
        raise unauthorized("refresh token already used; the session has been ended")
    pair = await _issue(session, settings, secret, user, user_session)
    await session.commit()
    return pair


async def logout(session: AsyncSession, user: User, session_id: str) -> None:
    await session.execute(
        update(UserSession).where(UserSession.id == session_id, UserSession.user_id == user.id)
        .values(revoked_at=utcnow())
    )
    audit.record(session, actor=user.email, action="auth.logout", target_type="session", target_id=session_id)
    await session.commit()


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).order_by(User.id))).all())


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise not_found("user")
    return user


def ensure_may_manage(actor: User, role: Role) -> None:
    """Admins manage users up to admin; only an owner may create, change or remove owners."""
    if role == Role.owner and Role(actor.role) != Role.owner:
        raise forbidden("only an owner may grant, change or remove the owner role")


async def _owner_count(session: AsyncSession) -> int:
    """Active owners, with their rows locked (PostgreSQL; SQLite serialises writers anyway): two owners
    demoting each other at once must not both see two owners and leave none."""
    owners = await session.scalars(
        select(User.id).where(User.role == Role.owner.value, User.is_active.is_(True)).with_for_update()
    )
    return len(owners.all())


async def update_user(
    session: AsyncSession, actor: User, user_id: int, *, role: Role | None, password: str | None,
    is_active: bool | None,
) -> User:
    user = await get_user(session, user_id)
    ensure_may_manage(actor, Role(user.role))
    if role is not None:
        ensure_may_manage(actor, role)
    # Only an active owner counts: demoting or disabling an already disabled owner loses nobody.
    losing_owner = Role(user.role) == Role.owner and user.is_active and (
        (role is not None and role != Role.owner) or is_active is False
    )
    if losing_owner and await _owner_count(session) <= 1:
        raise conflict("the last owner cannot be demoted or disabled")
    if role is not None:
        user.role = role.value
    if password is not None:
        check_password_strength(password)
        user.password_hash = await asyncio.to_thread(hash_password, password)
    if is_active is not None:
        user.is_active = is_active
    if password is not None or is_active is False or role is not None:
        # Credentials or rights changed: end every session so old tokens stop working now.
        await session.execute(
            update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return user


async def delete_user(session: AsyncSession, actor: User, user_id: int) -> User:
    user = await get_user(session, user_id)
    ensure_may_manage(actor, Role(user.role))
    if user.id == actor.id:
        raise conflict("you cannot delete yourself")
    if Role(user.role) == Role.owner and user.is_active and await _owner_count(session) <= 1:
        raise conflict("the last owner cannot be deleted")
    await session.delete(user)
    return user
