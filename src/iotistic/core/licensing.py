"""RS256 licences: key generation, signing (billing, operators) and verification (cloud API).

Claims: customerId, plan, features{maxDevices, ...}, limits{...}, trial{isTrial, expiresAt},
subscription{status, ...}, iat, exp. Anything that fails verification puts the instance in free mode, and
`LicenseState.reason` says why, so an operator sees the cause instead of silently reduced limits.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from iotistic.core.plans import FREE, TRIAL_DAYS, Plan, get_plan

ALGORITHM = "RS256"
ISSUER = "iotistic-billing"


def generate_keypair(bits: int = 2048) -> tuple[str, str]:
    """Returns (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private_pem, public_pem


def write_keypair(directory: Path, bits: int = 2048) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair(bits)
    private_path = directory / "license-private.pem"
    public_path = directory / "license-public.pem"
    import os

    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as handle:
        handle.write(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_text(public_pem)
    return private_path, public_path


def build_claims(
    *,
    customer_id: str,
    plan: Plan,
    days: int,
    trial: bool = False,
    subscription_status: str = "active",
    now: float | None = None,
    extra_features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    issued = int(now if now is not None else time.time())
    expires = issued + days * 86400
    trial_end = issued + TRIAL_DAYS * 86400
    return {
        "iss": ISSUER,
        "jti": str(uuid.uuid4()),
        "customerId": customer_id,
        "plan": plan.name,
        "features": {**plan.feature_claims(), **(extra_features or {})},
        "limits": plan.limit_claims(),
        "trial": {"isTrial": trial, "expiresAt": trial_end if trial else None},
        "subscription": {"status": subscription_status},
        "iat": issued,
        "exp": expires,
    }


def sign_license(claims: dict[str, Any], private_key_pem: str) -> str:
    return jwt.encode(claims, private_key_pem, algorithm=ALGORITHM)


def issue_license(
    private_key_pem: str, *, customer_id: str, plan: str, days: int, trial: bool = False,
    subscription_status: str = "active",
) -> str:
    claims = build_claims(
        customer_id=customer_id, plan=get_plan(plan), days=days, trial=trial,
        subscription_status=subscription_status,
    )
    return sign_license(claims, private_key_pem)


@dataclass(frozen=True)
class LicenseState:
    """What the instance may do now. `mode` is `licensed` or `free`."""

    mode: str
    plan: str
    features: dict[str, Any]
    limits: dict[str, Any]
    customer_id: str | None = None
    trial: dict[str, Any] = field(default_factory=dict)
    subscription: dict[str, Any] = field(default_factory=dict)
    expires_at: int | None = None
    reason: str | None = None

    @property
    def max_devices(self) -> int | None:
        value = self.features.get("maxDevices", self.limits.get("maxDevices"))
        return None if value is None else int(value)

    def feature_enabled(self, name: str) -> bool:
        return bool(self.features.get(name, False))


def free_mode(reason: str) -> LicenseState:
    return LicenseState(
        mode="free", plan=FREE.name, features=FREE.feature_claims(), limits=FREE.limit_claims(), reason=reason
    )


# Subscription states in which the customer keeps the plan's limits. A failed payment is reported
# (past_due) but keeps the instance working until billing cancels it.
_USABLE_SUBSCRIPTION = {"active", "trialing", "past_due"}


def evaluate_license(token: str | None, public_key_pem: str | None, *, now: float | None = None) -> LicenseState:
    """Verify a licence and turn it into what the instance may do. Never raises."""
    if not token:
        return free_mode("no licence installed")
    if not public_key_pem:
        return free_mode("no LICENSE_PUBLIC_KEY configured to verify the licence")
    try:
        # Load it as a public key first: PyJWT raises non-token errors for garbage or a private key.
        public_key = serialization.load_pem_public_key(public_key_pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return free_mode(f"licence public key unusable: {' '.join(str(exc).split())}")
    try:
        claims = jwt.decode(
            token,
            public_key,  # type: ignore[arg-type]
            algorithms=[ALGORITHM],
            options={"require": ["exp", "customerId", "plan"]},
        )
    except jwt.ExpiredSignatureError:
        return free_mode("licence expired")
    except jwt.InvalidTokenError as exc:
        return free_mode(f"licence invalid: {exc}")
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:  # e.g. a public key that is not RSA
        return free_mode(f"licence public key unusable: {exc}")
    if now is not None and int(claims["exp"]) <= now:
        return free_mode("licence expired")
    trial = claims.get("trial") or {}
    if trial.get("isTrial") and trial.get("expiresAt") and int(trial["expiresAt"]) <= (now or time.time()):
        return free_mode("trial ended")
    subscription = claims.get("subscription") or {}
    status = subscription.get("status", "active")
    if status not in _USABLE_SUBSCRIPTION:
        return free_mode(f"subscription {status}")
    features = claims.get("features")
    limits = claims.get("limits")
    if not isinstance(features, dict) or not isinstance(limits, dict):
        return free_mode("licence invalid: features and limits must be objects")
    return LicenseState(
        mode="licensed",
        plan=str(claims["plan"]),
        features=features,
        limits=limits,
        customer_id=str(claims["customerId"]),
        trial=trial,
        subscription=subscription,
        expires_at=int(claims["exp"]),
    )
