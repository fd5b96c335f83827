"""A Bosch BME688 environmental sensor indoors, as a pure model: seeded randomness in, readings out, no I/O.

Each device draws its own character from its seed (base temperature, diurnal amplitude and phase, humidity level,
pressure offset, gas-sensor baseline), so simulated devices differ; the same seed and the same sampling times give
the same readings.

- temperature (°C): base + diurnal sine (warmest mid-afternoon) + a slow mean-reverting drift + noise; 18-26.
- humidity (%RH): anti-correlated with temperature (warm air holds more water, so relative humidity falls) plus a
  slow drift and noise; about 30-60, clamped to 0-100.
- pressure (hPa): a mean-reverting random walk around the device's weather (~1013); 980-1040.
- gas resistance (Ohm): a per-device baseline (clean air: high resistance) that drops during occasional "VOC
  events" (cooking, cleaning: a Poisson process) and recovers exponentially; 5 kOhm - 500 kOhm.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from dataclasses import dataclass

# Metric names as published on `iot/device/<uuid>/sensor/<metric>`, with their units.
UNITS: dict[str, str] = {
    "temperature": "°C",
    "humidity": "%RH",
    "pressure": "hPa",
    "gas_resistance": "Ohm",
}
METRICS: tuple[str, ...] = tuple(UNITS)

TEMPERATURE_RANGE = (18.0, 26.0)
HUMIDITY_RANGE = (0.0, 100.0)
PRESSURE_RANGE = (980.0, 1040.0)
GAS_RANGE = (5_000.0, 500_000.0)

_DAY = 86_400.0
_HOUR = 3_600.0
# Relative humidity falls by about this much per °C of warming (same absolute humidity, around 21 °C, 45 %RH).
HUMIDITY_PER_DEGREE = 2.8
VOC_EVENTS_PER_HOUR = 0.25


@dataclass(frozen=True, slots=True)
class Sample:
    """One BME688 measurement."""

    temperature: float  # °C
    humidity: float  # %RH
    pressure: float  # hPa
    gas_resistance: float  # Ohm

    def values(self) -> dict[str, float]:
        return {"temperature": self.temperature, "humidity": self.humidity, "pressure": self.pressure,
                "gas_resistance": self.gas_resistance}


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def seed_for(device_id: str) -> int:
    """A stable seed from a device id (Python's `hash()` of a str changes between processes)."""
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big")


def _ou_step(x: float, dt_s: float, tau_s: float, sigma: float, rng: random.Random) -> float:
    """One exact step of an Ornstein-Uhlenbeck process around 0 (stationary standard deviation `sigma`)."""
    decay = math.exp(-dt_s / tau_s)
    return x * decay + sigma * math.sqrt(1 - decay * decay) * rng.gauss(0.0, 1.0)


class Bme688:
    """One simulated sensor. `sample(at)` advances it to `at` (times must not go backwards) and measures."""

    def __init__(self, seed: int | str) -> None:
        self._rng = random.Random(seed_for(seed) if isinstance(seed, str) else seed)
        rng = self._rng
        # The device's character.
        self.base_temperature = rng.uniform(20.5, 22.5)
        self.diurnal_amplitude = rng.uniform(0.8, 1.5)
        self.warmest_hour = rng.uniform(13.0, 17.0)  # in UTC; stands for the device's time zone and orientation
        self.base_humidity = rng.uniform(38.0, 50.0)
        self.base_pressure = rng.uniform(1005.0, 1021.0)
        self.gas_baseline = math.exp(rng.uniform(math.log(80_000), math.log(400_000)))
        # Its state.
        self._at: dt.datetime | None = None
        self._temperature_drift = rng.gauss(0.0, 0.3)
        self._humidity_drift = rng.gauss(0.0, 2.0)
        self._pressure_walk = rng.gauss(0.0, 4.0)
        self._gas_drift = rng.gauss(0.0, 0.1)  # log scale
        self._voc = 0.0  # current VOC load: resistance is divided by (1 + voc)
        self._voc_recovery_s = rng.uniform(15, 45) * 60

    def _advance(self, dt_s: float) -> None:
        rng = self._rng
        self._temperature_drift = _ou_step(self._temperature_drift, dt_s, 6 * _HOUR, 0.4, rng)
        self._humidity_drift = _ou_step(self._humidity_drift, dt_s, 4 * _HOUR, 3.0, rng)
        self._pressure_walk = _ou_step(self._pressure_walk, dt_s, 36 * _HOUR, 6.0, rng)
        self._gas_drift = _ou_step(self._gas_drift, dt_s, 2 * _HOUR, 0.15, rng)
        self._voc *= math.exp(-dt_s / self._voc_recovery_s)
        # A VOC event within this step (Poisson): resistance drops 3-9 fold, then recovers.
        if rng.random() < 1 - math.exp(-VOC_EVENTS_PER_HOUR * dt_s / _HOUR):
            self._voc += rng.uniform(2.0, 8.0)

    def sample(self, at: dt.datetime) -> Sample:
        if at.tzinfo is None:
            raise ValueError("sample times must be timezone-aware")
        if self._at is not None:
            elapsed = (at - self._at).total_seconds()
            if elapsed < 0:
                raise ValueError("sample times must not go backwards")
            if elapsed > 0:
                self._advance(elapsed)
        self._at = at
        rng = self._rng
        seconds_of_day = (at - at.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
        diurnal = math.cos(2 * math.pi * (seconds_of_day / _DAY - self.warmest_hour / 24))
        warming = self.diurnal_amplitude * diurnal + self._temperature_drift
        temperature = self.base_temperature + warming + rng.gauss(0.0, 0.05)
        humidity = (self.base_humidity - HUMIDITY_PER_DEGREE * warming + self._humidity_drift
                    + rng.gauss(0.0, 0.3))
        pressure = self.base_pressure + self._pressure_walk + rng.gauss(0.0, 0.05)
        gas = self.gas_baseline * math.exp(self._gas_drift + rng.gauss(0.0, 0.02)) / (1 + self._voc)
        return Sample(
            temperature=round(_clamp(temperature, TEMPERATURE_RANGE), 2),
            humidity=round(_clamp(humidity, HUMIDITY_RANGE), 2),
            pressure=round(_clamp(pressure, PRESSURE_RANGE), 2),
            gas_resistance=round(_clamp(gas, GAS_RANGE), 0),
        )
