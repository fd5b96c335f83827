"""Property-based fuzz of the certificate manager's OpenAPI schema (schemathesis): no input causes a server
error, and every error has the platform's `{error, message}` shape. Half the calls carry the service token, so the
fuzz reaches the handlers and not only the authentication."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.python import asgi as schemathesis_asgi

from iotistic.vpn.app import create_app
from iotistic.vpn.settings import load_vpn_settings
from tests.vpn.conftest import PASSPHRASE, make_pki

TOKEN = "vpn-fuzz-token-" + "f" * 24
MAX_EXAMPLES = int(os.environ.get("IOTISTIC_FUZZ_EXAMPLES", "20"))


def _settings(root: Path) -> Any:
    return load_vpn_settings(VPN_PKI_DIR=str(root / "pki"), VPN_KEY_PASSPHRASE=PASSPHRASE, VPN_SERVICE_TOKEN=TOKEN,
                             VPN_SERVER_HOST="vpn.example.com", VPN_STATUS_FILE=str(root / "status.log"),
                             VPN_LOG_FILE=str(root / "openvpn.log"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    pki = make_pki(tmp_path / "pki")
    pki.issue("dev-1", "cust1")  # something for the path ids to find
    with schemathesis_asgi.get_client(create_app(_settings(tmp_path))) as asgi_client:
        yield asgi_client
    schemathesis_asgi.shutdown_lifespans()


schema = schemathesis.openapi.from_dict(create_app(_settings(Path(tempfile.gettempdir()))).openapi())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: Any, client: Any) -> None:
    authenticated = hashlib.sha256(repr(case.path_parameters).encode()).digest()[0] % 4 != 0
    headers = {"Authorization": f"Bearer {TOKEN}"} if authenticated else {}
    response = case.call(base_url="http://testserver", session=client, headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and {"error", "message"} <= set(body), body
