"""What a customer's licence says, from the state of its subscription (pure: no database, no clock of its own).

The claims follow `iotistic.core.licensing` (the cloud API verifies them with `evaluate_license`):
- trialing: `trial.isTrial` with the trial's end, and the licence expires when the trial does;
- active / past_due / unpaid: valid until the end of the paid period plus a grace period, so a renewal whose
  webhook is late never stops an instance (past_due keeps working, unpaid puts the instance in free mode);
- canceled: valid until the instance is removed (the end of the cancellation grace period); the status alone
  puts the instance in free mode.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from iotistic.core.licensing import build_claims
from iotistic.core.plans import TRIAL_DAYS, get_plan

# A paid subscription whose period is not known yet (e.g. set by an operator, or before Stripe says): one month.
UNKNOWN_PERIOD_DAYS = 31


@dataclass(frozen=True)
class LicenceTerms:
    expires_at: dt.datetime
    trial: dict[str, Any]
    subscription: dict[str, Any]


def _ts(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def licence_terms(
    *,
    status: str,
    trial_ends_at: dt.datetime | None,
    period_end: dt.datetime | None,
    cancel_effective_at: dt.datetime | None,
    now: dt.datetime,
    grace_days: int,
) -> LicenceTerms:
    grace = dt.timedelta(days=grace_days)
    if status == "trialing":
        trial_end = trial_ends_at or now + dt.timedelta(days=TRIAL_DAYS)
        expires = trial_end
        trial = {"isTrial": True, "expiresAt": _ts(trial_end)}
    else:
        if status == "canceled":
            expires = cancel_effective_at or now + grace
        else:
            paid_until = period_end if period_end is not None else now + dt.timedelta(days=UNKNOWN_PERIOD_DAYS)
            expires = max(paid_until, now) + grace
        trial = {"isTrial": False, "expiresAt": None}
    subscription = {
        "status": status,
        "currentPeriodEnd": _ts(period_end),
        "cancelAt": _ts(cancel_effective_at) if status == "canceled" else None,
    }
    return LicenceTerms(expires_at=expires.replace(microsecond=0), trial=trial, subscription=subscription)


def licence_claims(*, customer_id: str, plan: str, terms: LicenceTerms, now: dt.datetime) -> dict[str, Any]:
    """The JWT claims: the plan's features and limits from the catalogue, the terms above, `exp` from them."""
    claims = build_claims(customer_id=customer_id, plan=get_plan(plan), days=1, now=now.timestamp(),
                          trial=bool(terms.trial["isTrial"]), subscription_status=terms.subscription["status"])
    claims["trial"] = dict(terms.trial)
    claims["subscription"] = dict(terms.subscription)
    claims["exp"] = int(terms.expires_at.timestamp())
    return claims
