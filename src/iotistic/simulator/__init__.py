"""Simulated devices: provisioned through the API, publishing BME688-like readings over MQTT."""
