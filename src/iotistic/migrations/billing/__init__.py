"""Alembic migrations of the billing database (run from code: `iotistic.billing.migrate`)."""
