import { describe, expect, it } from "vitest";

import { addReadings, chartsByMetric, fromApiSeries, latestText, pruneBuffer, seriesKey, type Series } from "./shape";

const names: Record<string, string> = { a: "boiler", b: "pump" };
const label = (u: string) => names[u] ?? u;
const iso = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const t = (s: number) => Date.UTC(2026, 0, 1, 0, 0, s);

describe("chart data shaping", () => {
  it("makes one chart per metric with one line per device, rows merged and sorted on time", () => {
    const series: Series[] = [
      { device: "a", metric: "temp", unit: "°C", points: [{ t: t(0), v: 20 }, { t: t(10), v: 21 }] },
      { device: "b", metric: "temp", unit: null, points: [{ t: t(5), v: 30 }, { t: t(10), v: 31 }] },
      { device: "a", metric: "rpm", unit: null, points: [{ t: t(3), v: 900 }] },
    ];
    const charts = chartsByMetric(series, label);
    expect(charts.map((c) => c.metric)).toEqual(["temp", "rpm"]);
    const [temp, rpm] = charts;
    expect(temp.unit).toBe("°C");
    expect(temp.lines).toEqual([{ key: "a", label: "boiler" }, { key: "b", label: "pump" }]);
    expect(temp.rows).toEqual([{ t: t(0), a: 20 }, { t: t(5), b: 30 }, { t: t(10), a: 21, b: 31 }]);
    expect(rpm.rows).toEqual([{ t: t(3), a: 900 }]);
    expect(latestText(temp)).toBe("Latest: boiler 21 °C, pump 31 °C");
  });

  it("reads the API's bucket averages or raw readings", () => {
    const bucketed = fromApiSeries({ device: "a", metric: "temp", buckets: [
      { ts: iso(0), avg: 1.5 }, { ts: iso(60), avg: 2.5 }] }, "°C");
    expect(bucketed).toEqual({ device: "a", metric: "temp", unit: "°C",
      points: [{ t: t(0), v: 1.5 }, { t: t(60), v: 2.5 }] });
    const raw = fromApiSeries({ device: "b", metric: "rpm", readings: [{ ts: iso(1), value: 7 }] });
    expect(raw.points).toEqual([{ t: t(1), v: 7 }]);
    expect(fromApiSeries({ device: "b", metric: "rpm" }).points).toEqual([]);
  });

  it("keeps a live buffer to its window and size, in time order, without duplicates", () => {
    const r = (s: number, v: number, device = "a", metric = "temp") => ({ device, metric, ts: iso(s), value: v,
      unit: "°C" });
    let buf = addReadings(new Map(), [r(0, 1), r(10, 2), r(5, 1.5)], 60_000);
    const key = seriesKey("a", "temp");
    expect(buf.get(key)?.points.map((p) => p.v)).toEqual([1, 1.5, 2]);
    // The same instant again replaces the value (a redelivered reading).
    buf = addReadings(buf, [r(10, 2.2)], 60_000);
    expect(buf.get(key)?.points.map((p) => p.v)).toEqual([1, 1.5, 2.2]);
    // 70 s later the first three fall out of the 60 s window.
    buf = addReadings(buf, [r(70, 3)], 60_000);
    expect(buf.get(key)?.points).toEqual([{ t: t(10), v: 2.2 }, { t: t(70), v: 3 }]);
    // At most maxPoints per series.
    buf = addReadings(buf, [r(71, 4), r(72, 5)], 60_000, 2);
    expect(buf.get(key)?.points.map((p) => p.v)).toEqual([4, 5]);
    // Untouched series keep their identity (React skips them); bad values are ignored.
    const other = addReadings(buf, [r(1, 9, "b")], 60_000);
    expect(other.get(key)).toBe(buf.get(key));
    expect(addReadings(other, [{ ...r(2, Number.NaN, "b") }], 60_000).get(seriesKey("b", "temp"))?.points)
      .toHaveLength(1);
    expect(addReadings(buf, [], 60_000)).toBe(buf);
  });

  it("drops series of devices and metrics no longer chosen", () => {
    const r = (device: string, metric: string) => ({ device, metric, ts: iso(0), value: 1, unit: null });
    const buf = addReadings(new Map(), [r("a", "temp"), r("a", "rpm"), r("b", "temp")], 60_000);
    expect([...pruneBuffer(buf, ["a"], []).keys()]).toEqual([seriesKey("a", "temp"), seriesKey("a", "rpm")]);
    expect([...pruneBuffer(buf, ["a", "b"], ["temp"]).keys()]).toEqual([seriesKey("a", "temp"),
      seriesKey("b", "temp")]);
    expect(pruneBuffer(buf, ["a", "b"], [])).toBe(buf);
  });
});
