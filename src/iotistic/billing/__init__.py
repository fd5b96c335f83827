"""The global billing service (FastAPI, port 3100): customers, subscriptions, Stripe, licence signing, the
deployment queue and its worker, and the Kubernetes/Helm deployer of per-customer instances.

It never imports `iotistic.cloud`: the two talk over HTTP only (ARCHITECTURE.md)."""
