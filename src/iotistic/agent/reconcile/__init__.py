"""Reconciliation: the pure planner (current, target) -> steps, and the executor that runs them round by round."""

from iotistic.agent.reconcile.planner import (
    Action,
    BackoffState,
    DeferReason,
    Deferred,
    Plan,
    Step,
    UpdateStrategy,
    next_backoff,
    plan,
)

__all__ = [
    "Action",
    "BackoffState",
    "DeferReason",
    "Deferred",
    "Plan",
    "Step",
    "UpdateStrategy",
    "next_backoff",
    "plan",
]
