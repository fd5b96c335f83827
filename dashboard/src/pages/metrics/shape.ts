/** Readings -> chart data: one chart per metric, one line per device, rows merged on time. Pure functions. */

export interface Point {
  t: number; // ms since the epoch
  v: number;
}

export interface Series {
  device: string;
  metric: string;
  unit: string | null;
  points: Point[]; // oldest first
}

/** One row per instant: `t` plus the value of each device that has a point then. */
export type Row = { t: number } & Record<string, number>;

export interface ChartModel {
  metric: string;
  unit: string | null;
  lines: { key: string; label: string }[];
  rows: Row[];
}

export function seriesKey(device: string, metric: string): string {
  return `${device}\u0000${metric}`;
}

/** A series from the API's answer: bucket averages, or raw readings (bucket=0). */
export function fromApiSeries(
  body: {
    device: string;
    metric: string;
    buckets?: { ts: string; avg: number }[];
    readings?: { ts: string; value: number }[];
  },
  unit: string | null = null,
): Series {
  const points = body.buckets
    ? body.buckets.map((b) => ({ t: Date.parse(b.ts), v: b.avg }))
    : (body.readings ?? []).map((r) => ({ t: Date.parse(r.ts), v: r.value }));
  return { device: body.device, metric: body.metric, unit, points: points.filter((p) => !Number.isNaN(p.t)) };
}

/** Group series by metric (in the order first seen) and merge each group's points into rows sorted by time. */
export function chartsByMetric(series: readonly Series[], deviceLabel: (uuid: string) => string): ChartModel[] {
  const groups = new Map<string, Series[]>();
  for (const s of series) {
    const group = groups.get(s.metric);
    if (group) group.push(s);
    else groups.set(s.metric, [s]);
  }
  return [...groups].map(([metric, members]) => {
    const byTime = new Map<number, Row>();
    for (const s of members) {
      for (const p of s.points) {
        let row = byTime.get(p.t);
        if (!row) {
          row = { t: p.t } as Row;
          byTime.set(p.t, row);
        }
        row[s.device] = p.v;
      }
    }
    const rows = [...byTime.values()].sort((a, b) => a.t - b.t);
    const unit = members.find((s) => s.unit)?.unit ?? null;
    return { metric, unit, lines: members.map((s) => ({ key: s.device, label: deviceLabel(s.device) })), rows };
  });
}

export interface LiveReading {
  device: string;
  metric: string;
  ts: string;
  value: number;
  unit: string | null;
}

export type LiveBuffer = ReadonlyMap<string, Series>;

/**
 * Add live readings to the buffer, keeping per series only the last `windowMs` (relative to the newest
 * reading) and at most `maxPoints`. Returns a new map; unchanged series keep their identity.
 */
export function addReadings(
  buffer: LiveBuffer,
  readings: readonly LiveReading[],
  windowMs: number,
  maxPoints = 1000,
): LiveBuffer {
  if (readings.length === 0) return buffer;
  const next = new Map(buffer);
  const touched = new Set<string>();
  for (const r of readings) {
    const t = Date.parse(r.ts);
    if (Number.isNaN(t) || !Number.isFinite(r.value)) continue;
    const key = seriesKey(r.device, r.metric);
    let s = next.get(key);
    if (!touched.has(key)) {
      s = s ? { ...s, points: [...s.points] } : { device: r.device, metric: r.metric, unit: r.unit, points: [] };
      next.set(key, s);
      touched.add(key);
    }
    const series = s as Series;
    if (r.unit) series.unit = r.unit;
    const points = series.points;
    // Readings mostly arrive in order; one that does not is put in place (a device's offline queue replaying).
    let i = points.length;
    while (i > 0 && points[i - 1].t > t) i--;
    if (i > 0 && points[i - 1].t === t) points[i - 1] = { t, v: r.value };
    else points.splice(i, 0, { t, v: r.value });
  }
  for (const key of touched) {
    const s = next.get(key) as Series;
    const newest = s.points.length ? s.points[s.points.length - 1].t : 0;
    let start = 0;
    while (start < s.points.length && s.points[start].t < newest - windowMs) start++;
    start = Math.max(start, s.points.length - maxPoints);
    if (start > 0) s.points = s.points.slice(start);
  }
  return next;
}

/** Keep only the series of the devices and metrics still selected (an empty metric list means all). */
export function pruneBuffer(buffer: LiveBuffer, devices: readonly string[], metrics: readonly string[]): LiveBuffer {
  const keepDevices = new Set(devices);
  const keepMetrics = new Set(metrics);
  const next = new Map<string, Series>();
  for (const [key, s] of buffer) {
    if (keepDevices.has(s.device) && (keepMetrics.size === 0 || keepMetrics.has(s.metric))) next.set(key, s);
  }
  return next.size === buffer.size ? buffer : next;
}

export function formatValue(v: unknown): string {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : String(v);
}

/** The latest value of each line, said in words (the chart itself is a picture). */
export function latestText(chart: ChartModel): string {
  const parts = chart.lines.map((line) => {
    for (let i = chart.rows.length - 1; i >= 0; i--) {
      const v = chart.rows[i][line.key];
      if (v !== undefined) return `${line.label} ${formatValue(v)}${chart.unit ? ` ${chart.unit}` : ""}`;
    }
    return `${line.label} no data`;
  });
  return `Latest: ${parts.join(", ")}`;
}
