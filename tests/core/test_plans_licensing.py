"""The plan catalogue and licence verification (pure: no database, no app)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from iotistic.core import plans
from iotistic.core.licensing import (
    ALGORITHM,
    ISSUER,
    build_claims,
    evaluate_license,
    free_mode,
    generate_keypair,
    issue_license,
    sign_license,
)
from iotistic.core.plans import ENTERPRISE, FREE, PLANS, PROFESSIONAL, STARTER, TRIAL_DAYS, get_plan

DAY = 86400


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_keypair()


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return generate_keypair()


def sign(keys, **overrides):
    """A licence with the given claims replaced (None removes a claim)."""
    claims = build_claims(customer_id="cust_1", plan=STARTER, days=30)
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return sign_license(claims, keys[0])


# Plan catalogue -------------------------------------------------------------------------------------------------

def test_catalogue_matches_the_product():
    assert set(PLANS) == {"starter", "professional", "enterprise"}
    assert (STARTER.max_devices, STARTER.retention_days) == (10, 30)
    assert (PROFESSIONAL.max_devices, PROFESSIONAL.retention_days) == (50, 90)
    assert ENTERPRISE.max_devices is None  # unlimited
    assert ENTERPRISE.dedicated_prometheus is True
    assert STARTER.dedicated_prometheus is False and PROFESSIONAL.dedicated_prometheus is False
    assert TRIAL_DAYS == 14


def test_free_mode_has_the_smallest_limits():
    assert FREE.name not in PLANS  # not sold
    for plan in PLANS.values():
        assert plan.max_devices is None or FREE.max_devices < plan.max_devices
        assert FREE.retention_days <= plan.retention_days
    assert FREE.dedicated_prometheus is False
    assert FREE.max_devices == 3


def test_plans_are_ordered_by_size():
    assert STARTER.max_devices < PROFESSIONAL.max_devices
    assert STARTER.retention_days < PROFESSIONAL.retention_days < ENTERPRISE.retention_days


def test_get_plan():
    assert get_plan("starter") is STARTER
    assert get_plan("enterprise") is ENTERPRISE
    for name in ("free", "Starter", "gold", ""):
        with pytest.raises(ValueError, match="unknown plan"):
            get_plan(name)


def test_feature_and_limit_claims_come_from_the_plan():
    features = PROFESSIONAL.feature_claims()
    assert features["maxDevices"] == 50
    assert features["retentionDays"] == 90
    assert features["hasDedicatedPrometheus"] is False
    assert ENTERPRISE.feature_claims()["hasDedicatedPrometheus"] is True
    assert ENTERPRISE.feature_claims()["maxDevices"] is None
    assert STARTER.limit_claims() == {"maxDevices": 10, "retentionDays": 30}


def test_plan_is_immutable():
    with pytest.raises(AttributeError):
        STARTER.max_devices = 1000  # type: ignore[misc]
    assert plans.STARTER.max_devices == 10


# Claims and signing -------------------------------------------------------------------------------------------

def test_build_claims_shape():
    now = 1_700_000_000
    claims = build_claims(customer_id="cust_9", plan=PROFESSIONAL, days=30, now=now)
    assert claims["iss"] == ISSUER
    assert claims["customerId"] == "cust_9"
    assert claims["plan"] == "professional"
    assert claims["features"]["maxDevices"] == 50
    assert claims["limits"] == {"maxDevices": 50, "retentionDays": 90}
    assert claims["trial"] == {"isTrial": False, "expiresAt": None}
    assert claims["subscription"] == {"status": "active"}
    assert claims["iat"] == now
    assert claims["exp"] == now + 30 * DAY
    assert claims["jti"] != build_claims(customer_id="cust_9", plan=PROFESSIONAL, days=30, now=now)["jti"]


def test_trial_lasts_fourteen_days():
    now = 1_700_000_000
    claims = build_claims(customer_id="c", plan=STARTER, days=30, trial=True, now=now)
    assert claims["trial"] == {"isTrial": True, "expiresAt": now + 14 * DAY}


def test_issued_licence_is_rs256(keys):
    token = issue_license(keys[0], customer_id="cust_1", plan="starter", days=30)
    assert jwt.get_unverified_header(token)["alg"] == ALGORITHM == "RS256"
    with pytest.raises(ValueError, match="unknown plan"):
        issue_license(keys[0], customer_id="cust_1", plan="platinum", days=30)


# evaluate_license ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("plan", ["starter", "professional", "enterprise"])
def test_valid_licence_is_licensed(keys, plan):
    token = issue_license(keys[0], customer_id="cust_1", plan=plan, days=30)
    state = evaluate_license(token, keys[1])
    assert state.mode == "licensed"
    assert state.plan == plan
    assert state.customer_id == "cust_1"
    assert state.reason is None
    assert state.max_devices == get_plan(plan).max_devices
    assert state.expires_at == pytest.approx(time.time() + 30 * DAY, abs=60)
    assert state.subscription == {"status": "active"}


def test_no_token_is_free_mode(keys):
    for token in (None, ""):
        state = evaluate_license(token, keys[1])
        assert state.mode == "free"
        assert state.plan == "free"
        assert state.max_devices == FREE.max_devices == 3
        assert state.reason and "no licence" in state.reason


def test_no_public_key_is_free_mode(keys):
    token = issue_license(keys[0], customer_id="c", plan="enterprise", days=30)
    state = evaluate_license(token, None)
    assert state.mode == "free"
    assert "LICENSE_PUBLIC_KEY" in (state.reason or "")


def test_expired_licence_is_free_mode(keys):
    token = issue_license(keys[0], customer_id="c", plan="enterprise", days=-1)
    state = evaluate_license(token, keys[1])
    assert state.mode == "free"
    assert state.reason == "licence expired"
    assert state.max_devices == 3


def test_expiry_is_checked_against_the_given_clock(keys):
    token = issue_license(keys[0], customer_id="c", plan="starter", days=30)
    assert evaluate_license(token, keys[1], now=time.time() + 29 * DAY).mode == "licensed"
    later = evaluate_license(token, keys[1], now=time.time() + 31 * DAY)
    assert later.mode == "free" and later.reason == "licence expired"


def test_trial_running_is_licensed_and_trial_ended_is_free(keys):
    running = issue_license(keys[0], customer_id="c", plan="starter", days=30, trial=True)
    state = evaluate_license(running, keys[1])
    assert state.mode == "licensed"
    assert state.trial["isTrial"] is True
    # Issued 15 days ago for 30 days: the licence itself is valid, but its 14-day trial is over.
    claims = build_claims(customer_id="c", plan=STARTER, days=30, trial=True, now=time.time() - 15 * DAY)
    ended = evaluate_license(sign_license(claims, keys[0]), keys[1])
    assert ended.mode == "free"
    assert ended.reason == "trial ended"
    # The same age without a trial stays licensed.
    claims = build_claims(customer_id="c", plan=STARTER, days=30, trial=False, now=time.time() - 15 * DAY)
    assert evaluate_license(sign_license(claims, keys[0]), keys[1]).mode == "licensed"


def test_trial_end_honours_the_given_clock(keys):
    token = issue_license(keys[0], customer_id="c", plan="starter", days=30, trial=True)
    assert evaluate_license(token, keys[1], now=time.time() + 13 * DAY).mode == "licensed"
    assert evaluate_license(token, keys[1], now=time.time() + 15 * DAY).reason == "trial ended"


@pytest.mark.parametrize("status", ["canceled", "unpaid", "incomplete_expired", "paused"])
def test_unusable_subscription_is_free_mode(keys, status):
    token = issue_license(keys[0], customer_id="c", plan="professional", days=30, subscription_status=status)
    state = evaluate_license(token, keys[1])
    assert state.mode == "free"
    assert state.reason == f"subscription {status}"
    assert state.max_devices == 3


@pytest.mark.parametrize("status", ["active", "trialing", "past_due"])
def test_usable_subscription_keeps_the_plan(keys, status):
    token = issue_license(keys[0], customer_id="c", plan="professional", days=30, subscription_status=status)
    state = evaluate_license(token, keys[1])
    assert state.mode == "licensed"
    assert state.max_devices == 50
    assert state.subscription["status"] == status


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_tampered_payload_is_free_mode(keys):
    token = issue_license(keys[0], customer_id="c", plan="starter", days=30)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["plan"] = "enterprise"
    claims["features"]["maxDevices"] = None
    state = evaluate_license(f"{header}.{_b64(claims)}.{signature}", keys[1])
    assert state.mode == "free"
    assert state.reason.startswith("licence invalid")
    assert state.max_devices == 3


def test_signed_with_another_key_is_free_mode(keys, other_keys):
    token = issue_license(other_keys[0], customer_id="c", plan="enterprise", days=30)
    state = evaluate_license(token, keys[1])
    assert state.mode == "free"
    assert "invalid" in state.reason


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "x" * 5000])
def test_garbage_token_is_free_mode(keys, token):
    state = evaluate_license(token, keys[1])
    assert state.mode == "free"
    assert state.reason.startswith("licence invalid")


def test_unsigned_alg_none_token_is_refused(keys):
    claims = build_claims(customer_id="c", plan=ENTERPRISE, days=30)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert evaluate_license(token, keys[1]).mode == "free"


def test_hmac_token_keyed_with_the_public_key_is_refused(keys):
    """Algorithm confusion: an HS256 token whose secret is the (public) verification key."""
    claims = build_claims(customer_id="c", plan=ENTERPRISE, days=30)
    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = f"{header}.{_b64(claims)}"
    mac = hmac.new(keys[1].encode(), body.encode(), hashlib.sha256).digest()
    token = f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    assert evaluate_license(token, keys[1]).mode == "free"


@pytest.mark.parametrize("missing", ["exp", "customerId", "plan"])
def test_missing_required_claim_is_free_mode(keys, missing):
    state = evaluate_license(sign(keys, **{missing: None}), keys[1])
    assert state.mode == "free"
    assert missing in state.reason


@pytest.mark.parametrize(("claim", "value"), [("features", "unlimited"), ("limits", [1, 2]), ("features", None)])
def test_malformed_features_or_limits_are_free_mode(keys, claim, value):
    token = sign(keys, **{claim: value})  # None: the claim is left out
    state = evaluate_license(token, keys[1])
    assert state.mode == "free"
    assert "invalid" in state.reason


@pytest.mark.parametrize("public_key", [
    "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    "not a key at all",
])
def test_unusable_public_key_is_free_mode_not_an_exception(keys, public_key):
    token = issue_license(keys[0], customer_id="c", plan="enterprise", days=30)
    state = evaluate_license(token, public_key)
    assert state.mode == "free"
    assert state.reason


def test_private_key_in_place_of_public_key_is_free_mode_not_an_exception(keys):
    token = issue_license(keys[0], customer_id="c", plan="enterprise", days=30)
    state = evaluate_license(token, keys[0])
    assert state.mode == "free"
    assert state.reason


def test_non_rsa_public_key_is_free_mode_not_an_exception(keys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    token = issue_license(keys[0], customer_id="c", plan="enterprise", days=30)
    state = evaluate_license(token, ec_public)
    assert state.mode == "free"
    assert "unusable" in state.reason


def test_licence_state_helpers(keys):
    token = sign(keys, features={"maxDevices": 7, "vpn": True, "digitalTwin": False})
    state = evaluate_license(token, keys[1])
    assert state.max_devices == 7
    assert state.feature_enabled("vpn") is True
    assert state.feature_enabled("digitalTwin") is False
    assert state.feature_enabled("nonexistent") is False
    # Falls back to limits when features do not carry maxDevices.
    state = evaluate_license(sign(keys, features={"vpn": True}, limits={"maxDevices": 12}), keys[1])
    assert state.max_devices == 12
    state = evaluate_license(sign(keys, features={}, limits={}), keys[1])
    assert state.max_devices is None


def test_free_mode_state():
    state = free_mode("because")
    assert (state.mode, state.plan, state.reason, state.max_devices) == ("free", "free", "because", 3)
    assert state.customer_id is None and state.expires_at is None
    assert state.feature_enabled("vpn") is False
