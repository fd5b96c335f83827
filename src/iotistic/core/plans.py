"""The one plan catalogue. The cloud API enforces it; billing sells it; charts size deployments from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRIAL_DAYS = 14


@dataclass(frozen=True)
class Plan:
    name: str
    max_devices: int | None  # None: unlimited
    retention_days: int
    dedicated_prometheus: bool
    features: dict[str, Any] = field(default_factory=dict)

    def feature_claims(self) -> dict[str, Any]:
        """The `features` object a licence for this plan carries."""
        return {
            "maxDevices": self.max_devices,
            "hasDedicatedPrometheus": self.dedicated_prometheus,
            "retentionDays": self.retention_days,
            **self.features,
        }

    def limit_claims(self) -> dict[str, Any]:
        return {"maxDevices": self.max_devices, "retentionDays": self.retention_days}


# Free mode: what an instance without a valid licence may do. Deliberately the smallest.
FREE = Plan("free", max_devices=3, retention_days=7, dedicated_prometheus=False,
            features={"digitalTwin": False, "vpn": False})
STARTER = Plan("starter", max_devices=10, retention_days=30, dedicated_prometheus=False,
               features={"digitalTwin": True, "vpn": False})
PROFESSIONAL = Plan("professional", max_devices=50, retention_days=90, dedicated_prometheus=False,
                    features={"digitalTwin": True, "vpn": True})
ENTERPRISE = Plan("enterprise", max_devices=None, retention_days=365, dedicated_prometheus=True,
                  features={"digitalTwin": True, "vpn": True, "dedicatedGrafana": True})

PLANS: dict[str, Plan] = {p.name: p for p in (STARTER, PROFESSIONAL, ENTERPRISE)}
"""The plans a customer can buy (free mode is not sold)."""


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown plan {name!r}; plans are {', '.join(PLANS)}") from None
