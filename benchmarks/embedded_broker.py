"""Rough throughput of the embedded broker (amqtt + the database's ACLs): QoS 0 messages per second from one
publisher to one subscriber.

The broker runs in this process's event loop, as under `iotistic up`; the two paho clients run in a child process
(devices are other processes too). The publisher keeps at most --window messages in flight (sent, not yet
received), so the figure is a rate the broker sustains rather than how fast it can be buried.

    python benchmarks/embedded_broker.py [--messages 20000] [--window 500] [--payload-bytes 64]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

USER, PASSWORD = "bench", "bench-password-0123456789"


def clients(port: int, messages: int, window: int, payload_bytes: int, result: Any) -> None:
    import paho.mqtt.client as mqtt

    received = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        nonlocal received
        received += 1
        if received >= messages:
            done.set()

    def make(client_id: str) -> Any:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.username_pw_set(USER, PASSWORD)
        c.connect("127.0.0.1", port, 60)
        c.loop_start()
        return c

    sub = make("bench-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.subscribe("bench/+/x", qos=0)
    assert subscribed.wait(10), "no SUBACK"
    pub = make("bench-pub")
    time.sleep(0.5)
    payload = b"x" * payload_bytes
    started = time.perf_counter()
    deadline = started + 120
    sent = 0
    while sent < messages and time.perf_counter() < deadline:
        if sent - received >= window:
            time.sleep(0.0005)
            continue
        pub.publish(f"bench/{sent % 100}/x", payload, qos=0)
        sent += 1
    done.wait(max(0.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - started
    result.put((sent, received, elapsed))
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()


async def main(args: argparse.Namespace) -> None:
    from iotistic.cloud.migrate import upgrade
    from iotistic.cloud.models import MqttAccount, MqttAclRule
    from iotistic.core.db import make_engine, make_sessionmaker
    from iotistic.core.security import mosquitto_password_hash
    from iotistic.embedded_broker import start_embedded_broker

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            account = MqttAccount(username=USER, password_hash=mosquitto_password_hash(PASSWORD), kind="service",
                                  is_active=True)
            session.add(account)
            await session.flush()
            session.add(MqttAclRule(account_id=account.id, topic="bench/#", access="readwrite"))
            await session.commit()
        broker = await start_embedded_broker(sessions, "127.0.0.1", 0)
        try:
            ctx = multiprocessing.get_context("spawn")
            result = ctx.Queue()
            child = ctx.Process(target=clients, args=(broker.port, args.messages, args.window, args.payload_bytes,
                                                      result))
            child.start()
            # The broker keeps running in this loop while a thread waits for the child's figures.
            sent, received, elapsed = await asyncio.to_thread(result.get, True, 180)
            await asyncio.to_thread(child.join, 10)
        finally:
            await broker.stop()
            await engine.dispose()
    print(f"embedded broker (amqtt), QoS 0, 1 publisher -> 1 subscriber, window {args.window}, "
          f"{args.payload_bytes}-byte payloads: sent {sent}, received {received} in {elapsed:.2f} s "
          f"= {received / elapsed:,.0f} msg/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--payload-bytes", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
