"""MQTT -> database + live stream pipeline (runs inside the cloud API or alone: `iotistic ingest`)."""
