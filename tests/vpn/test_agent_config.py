"""The agent's handling of the `.ovpn` text (checks, server override) and of the file that holds it, and its VPN
settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from iotistic.agent.settings import load_agent_settings
from iotistic.agent.vpn.config import Remote, VpnConfigError, prepare, remotes
from iotistic.agent.vpn.files import read_config, save_config, save_from_registration, write_private
from iotistic.core.settings import ConfigError

KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----"
OVPN = f"""# comment
client
dev tun
proto udp
remote vpn.example.com 1194
nobind
remote-cert-tls server
<ca>
-----BEGIN CERTIFICATE-----
up /bin/sh
-----END CERTIFICATE-----
</ca>
<key>
{KEY}
</key>
"""


def test_a_client_configuration_is_accepted_as_is() -> None:
    prepared = prepare(OVPN)
    assert prepared == OVPN
    assert remotes(prepared) == [Remote("vpn.example.com", 1194)]


def test_server_host_and_port_replace_every_remote_in_place() -> None:
    text = OVPN.replace("remote vpn.example.com 1194", "remote a.example.com 1194\nremote b.example.com 1195\n"
                        "remote-random")
    prepared = prepare(text, server_host="10.213.0.1", server_port=11940)
    assert remotes(prepared) == [Remote("10.213.0.1", 11940)]
    lines = prepared.splitlines()
    assert lines.index("remote 10.213.0.1 11940") == lines.index("proto udp") + 1
    assert "remote-random" not in lines
    assert KEY in prepared  # inline blocks untouched


def test_a_remote_is_added_when_the_text_has_none() -> None:
    prepared = prepare(OVPN.replace("remote vpn.example.com 1194\n", ""), server_host="vpn2.example.com")
    lines = prepared.splitlines()
    assert remotes(prepared) == [Remote("vpn2.example.com", 1194)]
    assert lines.index("remote vpn2.example.com 1194") < lines.index("<ca>")


def test_port_directive_is_the_default_port_of_a_remote() -> None:
    assert remotes("client\nport 1195\nremote h\n") == [Remote("h", 1195)]


@pytest.mark.parametrize("line", [
    "up /bin/sh", "down /tmp/x", "--up /bin/sh", "route-up x", "plugin /lib/evil.so", "script-security 2",
    "management 127.0.0.1 7505", "management-hold", "daemon", "log /etc/passwd", "engine dynamic",
    "auth-user-pass /etc/shadow", "config /tmp/other.conf", "cd /", "iproute /tmp/ip", "  UP /bin/sh",
])
def test_directives_that_run_programs_or_take_over_supervision_are_refused(line: str) -> None:
    with pytest.raises(VpnConfigError, match="is not accepted"):
        prepare(OVPN.replace("nobind", line))


def test_text_inside_inline_blocks_is_not_read_as_directives() -> None:
    assert "up /bin/sh" in prepare(OVPN)  # the line inside <ca> is certificate text, not a directive


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("client\nremote h\n<connection>\nremote x\n</connection>\n", "<connection> is not accepted"),
    ("client\nremote h\n<ca>\nabc\n", "not closed"),
    ("dev tun\nremote h 1194\n", "not a client configuration"),
    ("client\ndev tun\n", "names no server"),
    ("client\nremote h\x00\n", "NUL"),
    ("client\nremote h\n" + "#" * 70_000, "larger than"),
])
def test_unusable_texts_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(VpnConfigError, match=message):
        prepare(text)


def test_a_bad_server_host_is_refused() -> None:
    with pytest.raises(VpnConfigError, match="not a host name"):
        prepare(OVPN, server_host="evil host\nup /bin/sh")


def test_config_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "vpn" / "device.ovpn"
    save_config(path, OVPN)
    assert read_config(path) == OVPN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    inode = path.stat().st_ino
    newer = OVPN.replace("vpn.example.com", "vpn2.example.com")
    write_private(path, newer)
    assert read_config(path) == newer
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not the old one rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == ["device.ovpn"]  # no temporary file left


def test_a_refused_configuration_is_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "device.ovpn"
    with pytest.raises(VpnConfigError):
        save_config(path, OVPN.replace("nobind", "up /bin/sh"))
    assert not path.exists()


def test_registration_reply_stores_only_a_usable_configuration(tmp_path: Path) -> None:
    path = tmp_path / "device.ovpn"
    assert save_from_registration(path, {"enabled": True, "status": "pending"}) is False
    assert save_from_registration(path, None) is False
    assert save_from_registration(path, {"config": "client\nplugin x\nremote h\n"}) is False
    assert not path.exists()
    assert save_from_registration(path, {"enabled": True, "status": "issued", "config": OVPN}) is True
    assert read_config(path) == OVPN
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_vpn_settings_defaults_and_overrides(tmp_path: Path) -> None:
    settings = load_agent_settings(AGENT_DATA_DIR=str(tmp_path))
    assert (settings.vpn_enabled, settings.vpn_server_port, settings.vpn_auto_reconnect) == (False, 1194, True)
    assert settings.vpn_config_file == tmp_path / "vpn" / "device.ovpn"
    assert settings.vpn_argv_prefix == []
    settings = load_agent_settings(AGENT_DATA_DIR=str(tmp_path), VPN_ENABLED="true", VPN_SERVER_HOST="vpn.example.com",
                                   VPN_SERVER_PORT="11940", VPN_CONFIG_PATH="/etc/iotistic/device.ovpn",
                                   VPN_AUTO_RECONNECT="false", VPN_COMMAND_PREFIX="ip netns exec dev1")
    assert (settings.vpn_enabled, settings.vpn_server_host, settings.vpn_server_port) == (True, "vpn.example.com",
                                                                                         11940)
    assert settings.vpn_config_file == Path("/etc/iotistic/device.ovpn")
    assert settings.vpn_auto_reconnect is False
    assert settings.vpn_argv_prefix == ["ip", "netns", "exec", "dev1"]


@pytest.mark.parametrize(("env", "message"), [
    ({"VPN_SERVER_PORT": "0"}, "VPN_SERVER_PORT"),
    ({"VPN_SERVER_HOST": "bad host"}, "VPN_SERVER_HOST"),
    ({"VPN_COMMAND_PREFIX": "ip 'netns"}, "VPN_COMMAND_PREFIX"),
    ({"VPN_BACKOFF_BASE_SECONDS": "10", "VPN_BACKOFF_MAX_SECONDS": "5"}, "VPN_BACKOFF_BASE_SECONDS"),
])
def test_bad_vpn_settings_are_one_clear_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_agent_settings(AGENT_DATA_DIR=str(tmp_path), **env)
