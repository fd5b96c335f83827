"""Licence terms from a subscription's state (pure), checked with the cloud API's own licence code."""

from __future__ import annotations

import datetime as dt

import pytest

from iotistic.billing.licence_terms import UNKNOWN_PERIOD_DAYS, licence_claims, licence_terms
from iotistic.core.licensing import evaluate_license, sign_license
from iotistic.core.plans import PLANS
from tests.conftest import LicenseKeys

# Now: PyJWT checks `exp` against the real clock, whatever time evaluate_license is given.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _token(keys: LicenseKeys, plan: str, **state: object) -> str:
    terms = licence_terms(now=NOW, grace_days=7, **{"trial_ends_at": None, "period_end": None,
                                                     "cancel_effective_at": None, **state})  # type: ignore[arg-type]
    return sign_license(licence_claims(customer_id="c0123456789ab", plan=plan, terms=terms, now=NOW),
                        keys.private_pem)


def test_trial_licence_ends_with_the_trial(license_keys: LicenseKeys) -> None:
    trial_end = NOW + dt.timedelta(days=14)
    terms = licence_terms(status="trialing", trial_ends_at=trial_end, period_end=None, cancel_effective_at=None,
                          now=NOW, grace_days=7)
    assert terms.expires_at == trial_end
    assert terms.trial == {"isTrial": True, "expiresAt": int(trial_end.timestamp())}
    token = _token(license_keys, "starter", status="trialing", trial_ends_at=trial_end)
    during = evaluate_license(token, license_keys.public_pem, now=(NOW + dt.timedelta(days=13)).timestamp())
    assert (during.mode, during.plan, during.max_devices) == ("licensed", "starter", PLANS["starter"].max_devices)
    after = evaluate_license(token, license_keys.public_pem, now=(trial_end + dt.timedelta(seconds=1)).timestamp())
    assert after.mode == "free"


def test_paid_licence_lasts_the_period_plus_grace(license_keys: LicenseKeys) -> None:
    period_end = NOW + dt.timedelta(days=30)
    terms = licence_terms(status="active", trial_ends_at=NOW, period_end=period_end, cancel_effective_at=None,
                          now=NOW, grace_days=7)
    assert terms.expires_at == period_end + dt.timedelta(days=7)
    assert terms.trial == {"isTrial": False, "expiresAt": None}
    assert terms.subscription == {"status": "active", "currentPeriodEnd": int(period_end.timestamp()),
                                  "cancelAt": None}
    token = _token(license_keys, "enterprise", status="active", period_end=period_end)
    state = evaluate_license(token, license_keys.public_pem, now=(period_end + dt.timedelta(days=6)).timestamp())
    assert (state.mode, state.plan, state.max_devices) == ("licensed", "enterprise", None)
    assert state.features["hasDedicatedPrometheus"] is True


def test_a_stale_period_still_gives_a_grace_from_now() -> None:
    terms = licence_terms(status="past_due", trial_ends_at=None, period_end=NOW - dt.timedelta(days=3),
                          cancel_effective_at=None, now=NOW, grace_days=7)
    assert terms.expires_at == NOW + dt.timedelta(days=7)
    unknown = licence_terms(status="active", trial_ends_at=None, period_end=None, cancel_effective_at=None,
                            now=NOW, grace_days=7)
    assert unknown.expires_at == NOW + dt.timedelta(days=UNKNOWN_PERIOD_DAYS + 7)


@pytest.mark.parametrize(("status", "mode"), [("active", "licensed"), ("past_due", "licensed"),
                                              ("unpaid", "free"), ("canceled", "free")])
def test_the_subscription_status_reaches_the_instance(license_keys: LicenseKeys, status: str, mode: str) -> None:
    token = _token(license_keys, "professional", status=status, period_end=NOW + dt.timedelta(days=30),
                   cancel_effective_at=NOW + dt.timedelta(days=7))
    state = evaluate_license(token, license_keys.public_pem, now=NOW.timestamp())
    assert state.mode == mode
    if mode == "free":
        assert state.reason == f"subscription {status}"
    else:
        assert state.subscription["status"] == status


def test_a_canceled_licence_ends_with_the_removal() -> None:
    removal = NOW + dt.timedelta(days=7)
    terms = licence_terms(status="canceled", trial_ends_at=None, period_end=NOW + dt.timedelta(days=20),
                          cancel_effective_at=removal, now=NOW, grace_days=3)
    assert terms.expires_at == removal
    assert terms.subscription["cancelAt"] == int(removal.timestamp())


def test_claims_carry_the_plan_catalogue() -> None:
    terms = licence_terms(status="active", trial_ends_at=None, period_end=NOW, cancel_effective_at=None,
                          now=NOW, grace_days=0)
    claims = licence_claims(customer_id="c0123456789ab", plan="professional", terms=terms, now=NOW)
    assert claims["features"] == PLANS["professional"].feature_claims()
    assert claims["limits"] == PLANS["professional"].limit_claims()
    assert (claims["iat"], claims["exp"]) == (int(NOW.timestamp()), int(NOW.timestamp()))
    with pytest.raises(ValueError, match="unknown plan"):
        licence_claims(customer_id="c0123456789ab", plan="free", terms=terms, now=NOW)
