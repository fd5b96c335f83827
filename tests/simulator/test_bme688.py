"""The BME688 model and the wire format: ranges, determinism by seed, correlations, payloads ingest accepts."""

from __future__ import annotations

import datetime as dt
import json
import statistics

import pytest

from iotistic.core.schemas.telemetry import parse_sensor_payload
from iotistic.core.topics import parse_device_topic
from iotistic.simulator.bme688 import (
    GAS_RANGE,
    HUMIDITY_RANGE,
    METRICS,
    PRESSURE_RANGE,
    TEMPERATURE_RANGE,
    UNITS,
    Bme688,
    Sample,
    seed_for,
)
from iotistic.simulator.wire import (
    BrokerAddress,
    format_ts,
    mqtt5_probe_connect,
    parse_broker_url,
    sample_messages,
    sensor_payload,
    version_from_connack,
)

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def week(seed: int | str, step_s: int = 60) -> list[tuple[dt.datetime, Sample]]:
    model = Bme688(seed)
    times = [START + dt.timedelta(seconds=step_s * i) for i in range(7 * 86_400 // step_s)]
    return [(t, model.sample(t)) for t in times]


@pytest.mark.parametrize("seed", [0, 1, 42, "device-a", "device-b"])
def test_a_week_of_readings_stays_in_realistic_ranges(seed):
    samples = [s for _, s in week(seed)]
    temperatures = [s.temperature for s in samples]
    humidities = [s.humidity for s in samples]
    pressures = [s.pressure for s in samples]
    gas = [s.gas_resistance for s in samples]
    assert TEMPERATURE_RANGE[0] <= min(temperatures) and max(temperatures) <= TEMPERATURE_RANGE[1]
    assert 25 <= min(humidities) and max(humidities) <= 65  # indoors: about 30-60 %RH
    assert HUMIDITY_RANGE[0] <= min(humidities) and max(humidities) <= HUMIDITY_RANGE[1]
    assert PRESSURE_RANGE[0] <= min(pressures) and max(pressures) <= PRESSURE_RANGE[1]
    assert 995 <= statistics.mean(pressures) <= 1030
    assert GAS_RANGE[0] <= min(gas) and max(gas) <= GAS_RANGE[1]
    # Not constant: the values move (diurnal cycle, drift, walks, events).
    assert max(temperatures) - min(temperatures) > 1.0
    assert max(pressures) - min(pressures) > 1.0
    assert statistics.pstdev(humidities) > 1.0


def test_the_same_seed_gives_the_same_readings_and_other_seeds_differ():
    assert week("a") == week("a")
    assert week("a") != week("b")
    assert Bme688("a").base_temperature == Bme688(seed_for("a")).base_temperature
    assert seed_for("a") == seed_for("a") != seed_for("b")
    # Devices have their own character (not only their own noise).
    bases = {round(Bme688(f"device-{i}").base_temperature, 3) for i in range(20)}
    assert len(bases) == 20


@pytest.mark.parametrize("seed", ["x", "y", "z"])
def test_humidity_falls_when_temperature_rises(seed):
    samples = [s for _, s in week(seed)]
    correlation = statistics.correlation([s.temperature for s in samples], [s.humidity for s in samples])
    assert correlation < -0.4


def test_temperature_follows_a_daily_cycle_warmest_in_the_afternoon():
    by_hour: dict[int, list[float]] = {}
    for seed in range(10):
        for t, s in week(seed, step_s=300):
            by_hour.setdefault(t.hour, []).append(s.temperature)
    mean = {hour: statistics.mean(values) for hour, values in by_hour.items()}
    assert 11 <= max(mean, key=lambda h: mean[h]) <= 19
    assert max(mean, key=lambda h: -mean[h]) in {*range(0, 8), 23, 22}
    assert mean[15] - mean[3] > 1.0


def test_gas_resistance_drops_during_voc_events_and_recovers():
    samples = [s.gas_resistance for _, s in week("voc")]
    baseline = statistics.median(samples)
    drops = [i for i in range(1, len(samples)) if samples[i] < samples[i - 1] / 2]  # a sudden halving: an event
    assert drops, "no VOC event in a week"
    first = drops[0]
    assert samples[first] < baseline / 2
    # Within three hours of the event the sensor is back near its baseline.
    assert max(samples[first:first + 180]) > baseline * 0.7


def test_sampling_needs_aware_times_that_do_not_go_backwards():
    model = Bme688(1)
    model.sample(START)
    with pytest.raises(ValueError, match="backwards"):
        model.sample(START - dt.timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        model.sample(dt.datetime(2026, 1, 1))
    again = model.sample(START)  # the same instant twice is allowed (a new measurement, no time advance)
    assert TEMPERATURE_RANGE[0] <= again.temperature <= TEMPERATURE_RANGE[1]


# The wire format ------------------------------------------------------------------------------------------------

def test_sample_messages_parse_with_the_ingest_parser():
    at = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    sample = Bme688("wire").sample(at)
    messages = sample_messages("0123456789abcdef", sample, at)
    assert [parse_device_topic(t).rest for t, _ in messages] == list(METRICS)  # type: ignore[union-attr]
    for topic, payload in messages:
        metric = topic.rsplit("/", 1)[1]
        assert topic == f"iot/device/0123456789abcdef/sensor/{metric}"
        [reading] = parse_sensor_payload(metric, payload, dt.datetime.now(dt.UTC))
        assert (reading.metric, reading.value, reading.unit) == (metric, getattr(sample, metric), UNITS[metric])
        assert reading.ts == at.replace(microsecond=123000)
    doc = json.loads(messages[0][1])
    assert doc == {"value": sample.temperature, "unit": "°C", "ts": "2026-03-01T12:30:15.123Z"}


def test_timestamps_are_utc_with_a_z():
    paris = dt.timezone(dt.timedelta(hours=1))
    assert format_ts(dt.datetime(2026, 3, 1, 13, 0, tzinfo=paris)) == "2026-03-01T12:00:00.000Z"
    with pytest.raises(ValueError):
        format_ts(dt.datetime(2026, 3, 1))
    assert json.loads(sensor_payload("gas_resistance", 12345.0, START))["unit"] == "Ohm"


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883, False)),
    ("mqtt://broker.example.com", BrokerAddress("broker.example.com", 1883, False)),
    ("mqtts://broker.example.com", BrokerAddress("broker.example.com", 8883, True)),
    ("tcp://[::1]:1884", BrokerAddress("::1", 1884, False)),
    ("localhost:2883", BrokerAddress("localhost", 2883, False)),
])
def test_broker_urls(url, expected):
    assert parse_broker_url(url) == expected
    assert parse_broker_url(str(expected)) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://host:1883", "scheme"), ("mqtt://", "no host"), ("mqtt://host:99999", "not valid"),
    ("mqtt://host:1883/path", "nothing after"),
])
def test_bad_broker_urls_say_why(url, message):
    with pytest.raises(ValueError, match=message):
        parse_broker_url(url)


def test_version_detection_reads_the_connack():
    probe = mqtt5_probe_connect("probe-1")
    assert probe[0] == 0x10 and probe[1] == len(probe) - 2 and probe[2:8] == b"\x00\x04MQTT" and probe[8] == 5
    assert version_from_connack(b"\x20\x02\x00\x01") == "3.1.1"  # 3.1.1: unacceptable protocol version
    assert version_from_connack(b"") == "3.1.1"  # hung up
    assert version_from_connack(b"\x20\x03\x00\x87\x00") == "5"  # MQTT 5: not authorized, no properties
    assert version_from_connack(b"\x20\x03\x00\x00\x00") == "5"
