"""Thin HTTP routers over `iotistic.billing.services`."""
