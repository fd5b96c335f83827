"""MQTT messages received, as the broker counts them.

Why the broker and not ingest: Mosquitto counts every PUBLISH it accepts from any client of the instance
(telemetry, state reports, logs, anything an integration sends), which is the traffic a customer causes, and it
counts it once however many ingest workers run or restart. Ingest's own counters only see the topics it
subscribes to and reset with every worker. Mosquitto publishes the count as `$SYS/broker/publish/messages/received`
(a retained message, refreshed every `sys_interval`, 10 s by default), cumulative since the broker started: a
Prometheus counter, whose resets (a broker restart) `increase()` and `rate()` already handle.

Read at scrape time with a short-lived connection: subscribe, take the retained value, and unsubscribe. The
UNSUBACK comes back after every retained message of the subscription, so "no value" is known at once instead
of after a timeout.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from iotistic.core.broker_url import BrokerAddress

PUBLISH_RECEIVED_TOPIC = "$SYS/broker/publish/messages/received"
ACL_FILTER = "$SYS/broker/#"
"""What the exporter's MQTT service account must be allowed to read."""


class BrokerReadError(Exception):
    """The counter could not be read; the message says why, for the exporter's log."""


@dataclass
class _Read:
    value: float | None = None
    error: str | None = None
    done: bool = False


def read_publish_counter(address: BrokerAddress, username: str, password: str, *, timeout: float) -> float:
    """PUBLISH messages the broker has received since it started. Blocking: run it in a thread."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"iotistic-exporter-{secrets.token_hex(6)}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(username, password)
    if address.tls:
        client.tls_set()
    read = _Read()

    def on_connect(c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            read.error, read.done = f"the broker refused the exporter's login ({reason})", True
        else:
            c.subscribe(PUBLISH_RECEIVED_TOPIC, qos=0)

    def on_subscribe(c: Any, _u: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        if not reasons or reasons[0].is_failure:
            read.error, read.done = f"the broker refused the subscription to {PUBLISH_RECEIVED_TOPIC}", True
        else:
            c.unsubscribe(PUBLISH_RECEIVED_TOPIC)

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        try:
            read.value = float(message.payload.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            read.error = f"unexpected payload on {PUBLISH_RECEIVED_TOPIC}: {message.payload[:40]!r}"

    def on_unsubscribe(*_args: Any) -> None:
        read.done = True

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_unsubscribe = on_unsubscribe
    deadline = time.monotonic() + timeout
    try:
        client.connect(address.host, address.port, keepalive=max(10, int(timeout) + 5))
    except OSError as exc:
        raise BrokerReadError(f"cannot connect to {address}: {exc.strerror or exc}") from None
    try:
        while not read.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerReadError(f"no answer from {address} within {timeout:g} s")
            rc = client.loop(timeout=min(remaining, 0.25))
            if rc != mqtt.MQTT_ERR_SUCCESS and not read.done:
                raise BrokerReadError(f"connection to {address} lost: {mqtt.error_string(rc)}")
    finally:
        client.disconnect()
    if read.error is not None:
        raise BrokerReadError(read.error)
    if read.value is None:
        # Mosquitto publishes it from its first $SYS update on; none means $SYS is off (sys_interval 0) or the
        # account may subscribe but not read the topic.
        raise BrokerReadError(f"{address} sent no {PUBLISH_RECEIVED_TOPIC} (is sys_interval 0, or may the "
                              f"account not read {ACL_FILTER}?)")
    return read.value
