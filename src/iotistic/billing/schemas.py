"""Request and response bodies of the billing API."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, field_validator

from iotistic.core.plans import PLANS

MIN_PASSWORD_LENGTH = 10
# Argon2 hashes any length in the same time, but there is no reason to accept a megabyte.
MAX_PASSWORD_LENGTH = 256


def _printable(value: str) -> str:
    value = value.strip()
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in value):
        raise ValueError("must not contain control characters")
    if not value:
        raise ValueError("must not be blank")
    return value


def _known_plan(value: str) -> str:
    if value not in PLANS:
        raise ValueError(f"unknown plan {value!r}; plans are {', '.join(PLANS)}")
    return value


PlanName = Annotated[str, Field(max_length=32), AfterValidator(_known_plan)]
Email = Annotated[EmailStr, Field(max_length=254)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupIn(Strict):
    email: Email
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    company: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]
    plan: PlanName = "starter"

    @field_validator("password")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class LoginIn(Strict):
    email: Email
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int  # seconds
    customer_id: str


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    plan: str
    status: str
    trial_ends_at: dt.datetime | None
    current_period_start: dt.datetime | None
    current_period_end: dt.datetime | None
    cancel_effective_at: dt.datetime | None


class CustomerOut(BaseModel):
    id: str
    email: str
    company: str
    created_at: dt.datetime
    subscription: SubscriptionOut


class LicenseOut(BaseModel):
    token: str
    plan: str
    subscription_status: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    claims: dict[str, Any]


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str
    attempts: int
    max_attempts: int
    run_after: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class DeploymentOut(BaseModel):
    customer_id: str
    status: str
    namespace: str
    revision: int
    values_digest: str | None
    last_error: str | None
    updated_at: dt.datetime
    job: JobOut | None  # the newest job: what happens (or happened) next


class SignupOut(BaseModel):
    customer: CustomerOut
    license: LicenseOut
    deployment: DeploymentOut
    session: TokenOut


class PublicKeyOut(BaseModel):
    algorithm: str
    public_key: str  # PEM; what each instance's LICENSE_PUBLIC_KEY is set to


class CustomerSummary(BaseModel):
    id: str
    email: str
    company: str
    plan: str
    status: str
    deployment_status: str | None
    created_at: dt.datetime


class CustomerPage(BaseModel):
    items: list[CustomerSummary]
    total: int


class SubscriptionChangeIn(Strict):
    """An operator's change of a subscription (e.g. a plan given outside Stripe)."""

    plan: PlanName | None = None
    status: Annotated[str | None, Field(pattern=r"^(trialing|active|past_due|unpaid|canceled)$")] = None


class SubscriptionChangeOut(BaseModel):
    changed: bool
    subscription: SubscriptionOut
