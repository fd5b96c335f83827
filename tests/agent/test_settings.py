"""The agent's configuration: defaults, the data folder, and one clear line for anything wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotistic.agent import settings as agent_settings
from iotistic.agent.settings import AgentSettings, load_agent_settings
from iotistic.core.settings import ConfigError

NAMES = [field.alias for field in AgentSettings.model_fields.values() if field.alias]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)


def test_defaults_are_local_mode_and_localhost_only(tmp_path):
    s = load_agent_settings(AGENT_DATA_DIR=str(tmp_path))
    assert s.local_mode and s.cloud_api_endpoint is None
    assert (s.device_api_host, s.device_api_port) == ("127.0.0.1", 48484) and s.api_localhost_only
    assert (s.poll_interval, s.report_throttle, s.metrics_interval) == (60, 10, 300)
    assert 0 < s.poll_jitter < 1 and s.backoff_base < s.backoff_max
    assert s.reboot_argv is None and s.shutdown_argv is None  # host actions are refused until configured
    assert s.store_path == tmp_path / "agent.db"
    assert s.log_level == "INFO"


def test_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUD_API_ENDPOINT", "https://iot.example.com/")
    monkeypatch.setenv("PROVISIONING_KEY", "pk_secret_value")
    monkeypatch.setenv("APPLICATION_ID", "7")
    monkeypatch.setenv("DEVICE_API_PORT", "50000")
    monkeypatch.setenv("DEVICE_API_HOST", "0.0.0.0")
    monkeypatch.setenv("AGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOST_REBOOT_COMMAND", "systemctl reboot --message 'agent asked'")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    s = load_agent_settings()
    assert s.cloud_api_endpoint == "https://iot.example.com" and not s.local_mode
    assert s.application_id == 7 and s.device_api_port == 50000 and not s.api_localhost_only
    assert s.reboot_argv == ["systemctl", "reboot", "--message", "agent asked"]
    assert s.log_level == "DEBUG"
    assert "pk_secret_value" not in repr(s)


def test_empty_variables_count_as_unset(tmp_path):
    s = load_agent_settings(CLOUD_API_ENDPOINT="", PROVISIONING_KEY=" ", APPLICATION_ID="", DEVICE_NAME="",
                            AGENT_DATA_DIR=str(tmp_path))
    assert s.local_mode and s.provisioning_key is None and s.application_id is None and s.device_name is None


def test_data_dir_default_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(agent_settings.os, "geteuid", lambda: 0)
    assert load_agent_settings().data_dir == Path("/var/lib/iotistic-agent")
    monkeypatch.setattr(agent_settings.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert load_agent_settings().data_dir == tmp_path / "state" / "iotistic-agent"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert load_agent_settings().data_dir == Path.home() / ".local" / "state" / "iotistic-agent"
    # A relative folder given explicitly is made absolute once, at start.
    monkeypatch.chdir(tmp_path)
    assert load_agent_settings(AGENT_DATA_DIR="rel").data_dir == tmp_path / "rel"


@pytest.mark.parametrize(("env", "words"), [
    ({"CLOUD_API_ENDPOINT": "ftp://iot.example.com"}, ["CLOUD_API_ENDPOINT", "http"]),
    ({"CLOUD_API_ENDPOINT": "https://"}, ["CLOUD_API_ENDPOINT"]),
    ({"DEVICE_API_PORT": "70000"}, ["DEVICE_API_PORT"]),
    ({"DEVICE_API_PORT": "http"}, ["DEVICE_API_PORT"]),
    ({"POLL_JITTER": "1.5"}, ["POLL_JITTER"]),
    ({"POLL_INTERVAL_SECONDS": "0"}, ["POLL_INTERVAL_SECONDS"]),
    ({"LOG_LEVEL": "loud"}, ["LOG_LEVEL", "DEBUG"]),
    ({"HOST_REBOOT_COMMAND": "reboot 'now"}, ["HOST_REBOOT_COMMAND", "command line"]),
    ({"DEVICE_NAME": "a/b"}, ["DEVICE_NAME"]),
    ({"APPLICATION_ID": "0"}, ["APPLICATION_ID"]),
    ({"PROVISIONING_KEY": "pk_12345678"}, ["PROVISIONING_KEY", "CLOUD_API_ENDPOINT"]),
    ({"BACKOFF_BASE_SECONDS": "600", "BACKOFF_MAX_SECONDS": "60"}, ["BACKOFF_BASE_SECONDS"]),
])
def test_invalid_configuration_is_one_clear_line(env, words):
    with pytest.raises(ConfigError) as caught:
        load_agent_settings(**env)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("invalid configuration")
    for word in words:
        assert word.lower() in message.lower(), message
