"""Fixtures the end-to-end tests share with the parts they exercise (made visible here by importing them)."""

from tests.billing.conftest import billing_postgresql_url  # noqa: F401
from tests.billing.test_deployer import helm_bin  # noqa: F401
