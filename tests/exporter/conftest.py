"""The exporter's fixtures live in env.py, so billing's usage tests can use them too."""

from tests.exporter.env import exporter_account, exporter_settings, register_devices, sys_broker

__all__ = ["exporter_account", "exporter_settings", "register_devices", "sys_broker"]
