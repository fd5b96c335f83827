"""The in-process MQTT broker of the embedded default (`iotistic up`): amqtt with the database's accounts and ACLs.

Production uses Mosquitto, kept in line with the database by `iotistic broker sync`; this broker enforces the same
accounts and the same rules (through `iotistic.core.acl`) without any server to install.
"""

from iotistic.embedded_broker.broker import AccountCache, EmbeddedBroker, start_embedded_broker

__all__ = ["AccountCache", "EmbeddedBroker", "start_embedded_broker"]
