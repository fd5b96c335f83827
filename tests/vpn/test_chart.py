"""charts/vpn-server rendered by the real helm, validated against the Kubernetes schemas, and its commands run
with the environment it sets."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from iotistic.cli import app
from tests.charts.manifests import ROOT, all_containers, env_of, lint, one, pod_spec, render, schema_errors, template

CHART = ROOT / "charts" / "vpn-server"
VALUES = {"serverHost": "vpn.example.com"}


def _render(tmp_path: Path, **values: Any) -> list[dict[str, Any]]:
    return render(CHART, {**VALUES, **values}, tmp_path, namespace="vpn-server", release="iot")


def test_lint_and_schemas(tmp_path: Path) -> None:
    result = lint(CHART, VALUES, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for values in ({}, {"openvpnPrivileged": True, "service": {"type": "NodePort"}},
                   {"secrets": {"existingSecret": "mine"}, "persistence": {"existingClaim": "pki"}}):
        docs = _render(tmp_path, **values)
        for doc in docs:
            assert schema_errors(doc) == [], (doc["kind"], schema_errors(doc))


def test_server_host_is_required_and_checked(tmp_path: Path) -> None:
    missing = template(CHART, {}, tmp_path, namespace="vpn-server")
    assert missing.returncode != 0 and "serverHost" in missing.stderr
    bad = template(CHART, {"serverHost": "a b; up /bin/sh"}, tmp_path, namespace="vpn-server")
    assert bad.returncode != 0 and "serverHost" in bad.stderr


def test_one_writer_and_the_pieces_fit(tmp_path: Path) -> None:
    docs = _render(tmp_path)
    deployment = one(docs, "Deployment", "iot-vpn")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(deployment)
    containers = {c["name"]: c for c in all_containers(spec)}
    assert set(containers) == {"init-pki", "openvpn", "cert-manager"}
    # Both sides read the same PKI and OpenVPN files.
    init_env, manager_env = env_of(containers["init-pki"]), env_of(containers["cert-manager"])
    for name in ("VPN_PKI_DIR", "VPN_STATUS_FILE", "VPN_LOG_FILE", "VPN_MANAGEMENT_SOCKET", "VPN_SUBNET"):
        assert init_env[name] == manager_env[name], name
    assert manager_env["VPN_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "service-token"
    # OpenVPN gets the tun device and NET_ADMIN, not privileged; the others no capability at all.
    openvpn = containers["openvpn"]
    assert set(openvpn["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "SETUID", "SETGID"}
    assert "privileged" not in openvpn["securityContext"]
    assert {m["mountPath"] for m in openvpn["volumeMounts"]} >= {"/dev/net/tun", "/var/log/openvpn", "/run/openvpn"}
    for name in ("init-pki", "cert-manager"):
        assert containers[name]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    passphrase = next(v for v in spec["volumes"] if v["name"] == "secrets")
    assert passphrase["secret"]["defaultMode"] == 0o400
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert services["iot-vpn"]["spec"]["ports"] == [{"name": "openvpn", "port": 1194, "targetPort": "openvpn",
                                                      "protocol": "UDP"}]
    assert services["iot-vpn-api"]["spec"]["type"] == "ClusterIP"
    secret = one(docs, "Secret", "iot-vpn-secrets")
    assert set(secret["data"]) == {"key-passphrase", "service-token"}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_the_init_script_works_with_the_charts_environment(tmp_path: Path) -> None:
    """Run the init container's commands (with its environment, paths moved under tmp_path): the PKI is created
    once, and the server configuration points at the files the other containers mount."""
    init = next(c for c in all_containers(pod_spec(one(_render(tmp_path), "Deployment", "iot-vpn")))
                if c["name"] == "init-pki")
    env: dict[str, str | None] = {e["name"]: e.get("value") for e in init["env"]}
    env["VPN_KEY_PASSPHRASE"] = "from-the-secret-" + "x" * 16
    env["VPN_PKI_DIR"] = str(tmp_path / "pki")
    lines = [line.strip().rstrip("\\").strip() for line in init["args"][0].splitlines()]
    render_args = shlex.split(" ".join(lines[1:]))
    assert lines[0].startswith('[ -f "$VPN_PKI_DIR/index.json" ] || iotistic vpn init-pki')
    assert render_args[:3] == ["iotistic", "vpn", "render-server-config"]
    runner = CliRunner()
    assert runner.invoke(app, ["vpn", "init-pki"], env=env).exit_code == 0
    out = tmp_path / "server.conf"
    args = [*render_args[3:]]
    args[args.index("-o") + 1] = str(out)
    result = runner.invoke(app, args=["vpn", "render-server-config", *args], env=env)
    assert result.exit_code == 0, result.output
    config = out.read_text()
    mounts = {m["mountPath"] for c in all_containers(pod_spec(one(_render(tmp_path), "Deployment", "iot-vpn")))
              for m in c["volumeMounts"]}
    assert 'askpass "/run/secrets/iotistic-vpn/key-passphrase"' in config
    assert "/run/secrets/iotistic-vpn" in mounts and "/run/openvpn" in mounts and "/var/log/openvpn" in mounts
    assert 'status "/var/log/openvpn/status.log" 10' in config
    assert 'management "/run/openvpn/management.sock" unix' in config
    assert f'crl-verify "{tmp_path}/pki/crl.pem"' in config and "user nobody" in config


@pytest.mark.parametrize("values", [{"vpn": {"customerBlock": 24}}, {"vpn": {"port": 0}},
                                    {"service": {"type": "ExternalName"}}])
def test_bad_values_are_refused(tmp_path: Path, values: dict[str, Any]) -> None:
    result = template(CHART, {**VALUES, **values}, tmp_path, namespace="vpn-server")
    assert result.returncode != 0 and "values don't meet the specifications" in result.stderr, result.stderr
