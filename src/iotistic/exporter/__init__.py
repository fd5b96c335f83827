"""The usage exporter: Prometheus `/metrics` for one customer instance (devices, MQTT messages, storage)."""
