"""Iotistic: an open-source IoT platform (edge agent, cloud API, MQTT, digital twin, SaaS)."""

__version__ = "0.1.0"
