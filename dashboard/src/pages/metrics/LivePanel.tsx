import Box from "@mui/material/Box";
import MenuItem from "@mui/material/MenuItem";
import TextField from "@mui/material/TextField";
import { lazy, Suspense, useEffect, useMemo, useRef, useState } from "react";

import { useSeries } from "../../api/telemetry";
import { StatusChip } from "../../components/StatusChip";
import { EmptyState } from "../../components/EmptyState";
import { Loading } from "../../components/Loading";
import type { Reading } from "../../live/socket";
import { useLiveReadings, useLiveStatus } from "../../live/useLive";
import { addReadings, chartsByMetric, pruneBuffer, seriesKey, type LiveBuffer } from "./shape";

const ChartGrid = lazy(() => import("./ChartGrid"));

const WINDOWS = [
  { label: "1 minute", ms: 60_000 },
  { label: "5 minutes", ms: 300_000 },
  { label: "15 minutes", ms: 900_000 },
];
/** Readings are gathered and drawn once a second: a fast sensor must not redraw the charts on every message. */
const FLUSH_MS = 1000;

interface Props {
  devices: string[];
  /** the metrics chosen; empty: every metric of these devices */
  metrics: string[];
  /** what the charts start with before live readings arrive: the chosen devices' metrics */
  pairs: { device: string; metric: string }[];
  label: (uuid: string) => string;
  unit: (metric: string) => string | null;
  colorIndex: (uuid: string) => number;
}

const STATUS_LABEL: Record<string, string> = {
  idle: "Not connected", connecting: "Connecting", open: "Live", reconnecting: "Reconnecting", closed: "Disconnected",
};

/** Live readings from `/ws`, seeded with the last minutes of stored readings so a chart is never blank. */
export function LivePanel({ devices, metrics, pairs, label, unit, colorIndex }: Props) {
  const [windowMs, setWindowMs] = useState(WINDOWS[1].ms);
  const [buffer, setBuffer] = useState<LiveBuffer>(new Map());
  const [now, setNow] = useState(() => Date.now());
  const queue = useRef<Reading[]>([]);
  const live = useLiveStatus();

  useLiveReadings(devices, (r) => {
    queue.current.push(r);
  }, { metrics: metrics.length ? metrics : undefined });

  useEffect(() => {
    const timer = setInterval(() => {
      const batch = queue.current;
      queue.current = [];
      if (batch.length) setBuffer((b) => addReadings(b, batch, windowMs));
      setNow(Date.now());
    }, FLUSH_MS);
    return () => clearInterval(timer);
  }, [windowMs]);

  const deviceKey = devices.join(",");
  const metricKey = metrics.join(",");
  useEffect(() => {
    setBuffer((b) => pruneBuffer(b, deviceKey ? deviceKey.split(",") : [], metricKey ? metricKey.split(",") : []));
  }, [deviceKey, metricKey]);

  // The seed: the window's newest stored readings (up to 1000 a series), asked once per selection and window.
  const seedQuery = useMemo(() => {
    const end = Date.now();
    return { from: new Date(end - windowMs).toISOString(), to: new Date(end + 1000).toISOString(), maxPoints: 2,
      bucket: 0, limit: 1000, newest: true };
  }, [windowMs, deviceKey, metricKey]);
  const seeds = useSeries(pairs, seedQuery);
  const seeded = useRef(new Set<string>());
  useEffect(() => seeded.current.clear(), [seedQuery]);
  useEffect(() => {
    const fresh = seeds.flatMap((s) => {
      const body = s.data;
      const key = body && seriesKey(body.device, body.metric);
      if (!body || !key || seeded.current.has(key)) return [];
      seeded.current.add(key);
      return (body.readings ?? []).map((r) => ({ device: body.device, metric: body.metric, ts: r.ts,
        value: r.value, unit: unit(body.metric) }));
    });
    if (fresh.length) setBuffer((b) => addReadings(b, fresh, windowMs));
  });

  const charts = chartsByMetric([...buffer.values()], label);
  return (
    <Box>
      <Box sx={{ display: "flex", flexWrap: "wrap", gap: 2, alignItems: "center" }}>
        <TextField select size="small" label="Window" value={windowMs} sx={{ minWidth: 150 }}
          onChange={(e) => setWindowMs(Number(e.target.value))}>
          {WINDOWS.map((w) => <MenuItem key={w.ms} value={w.ms}>{w.label}</MenuItem>)}
        </TextField>
        <Box role="status" aria-live="polite" aria-label="Live connection"
          sx={{ display: "flex", gap: 1, alignItems: "center" }}>
          <StatusChip status={live.status === "open" ? "online" : live.status === "closed" ? "error" : "pending"}
            label={STATUS_LABEL[live.status] ?? live.status} />
          {live.error && <Box component="span" sx={{ color: "text.secondary" }}>{live.error}</Box>}
        </Box>
      </Box>
      <Box sx={{ mt: 2 }}>
        {charts.length === 0 ? (
          <EmptyState title="Waiting for readings">
            Charts appear as soon as the chosen devices send readings.
          </EmptyState>
        ) : (
          <Suspense fallback={<Loading label="Loading charts" />}>
            <ChartGrid charts={charts} colorIndex={colorIndex} domain={[now - windowMs, now]} />
          </Suspense>
        )}
      </Box>
    </Box>
  );
}
