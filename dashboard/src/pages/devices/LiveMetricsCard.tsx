import Box from "@mui/material/Box";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Chip from "@mui/material/Chip";
import Grid from "@mui/material/Grid";
import Stack from "@mui/material/Stack";
import Typography from "@mui/material/Typography";
import { useQueries, useQuery } from "@tanstack/react-query";
import { lazy, Suspense, useEffect, useMemo, useState } from "react";

import { api } from "../../api/client";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { StatusChip } from "../../components/StatusChip";
import { useLiveSeries, useLiveStatus, type Point } from "../../live/useLive";

const LiveChart = lazy(() => import("./LiveChart"));

const WINDOW_MS = 5 * 60_000;
const MAX_SELECTED = 4;

interface MetricLatest {
  metric: string;
  ts: string;
  value: number;
  unit: string | null;
}

interface RawSeries {
  readings?: { ts: string; value: number }[];
}

const telemetryPath = (uuid: string) => `/api/v1/devices/${encodeURIComponent(uuid)}/telemetry`;

/** Seed points (the last minutes from the API) followed by live ones newer than the seed. */
export function mergePoints(seed: Point[], live: Point[], cutoff: number): Point[] {
  const lastSeed = seed.at(-1)?.t ?? -Infinity;
  return [...seed, ...live.filter((p) => p.t > lastSeed)].filter((p) => p.t >= cutoff);
}

/** Prefer the device's load and the common sensor readings so a fresh page shows something meaningful. */
export function defaultSelection(metrics: string[]): string[] {
  const preferred = ["system.cpu", "system.memory", "temperature", "humidity"];
  const first = preferred.filter((m) => metrics.includes(m));
  return [...first, ...metrics.filter((m) => !first.includes(m))].slice(0, 2);
}

function useNow(intervalMs: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(t);
  }, [intervalMs]);
  return now;
}

export function LiveMetricsCard({ uuid }: { uuid: string }) {
  const metrics = useQuery({
    queryKey: ["telemetry", "metrics", uuid],
    queryFn: ({ signal }) => api<MetricLatest[]>(`${telemetryPath(uuid)}/metrics`, { signal }),
    refetchInterval: 30_000,
  });
  const live = useLiveSeries([uuid], { windowMs: WINDOW_MS });
  const status = useLiveStatus();
  const now = useNow(2_000);

  // Metrics known from the API plus any that appeared live since.
  const names = useMemo(() => {
    const all = new Set((metrics.data ?? []).map((m) => m.metric));
    for (const key of Object.keys(live)) all.add(key.slice(uuid.length + 1));
    return [...all].sort();
  }, [metrics.data, live, uuid]);
  const [selected, setSelected] = useState<string[] | null>(null);
  const chosen = selected ?? defaultSelection(names);

  const [seedFrom] = useState(() => new Date(Date.now() - WINDOW_MS).toISOString());
  const seeds = useQueries({
    queries: chosen.map((metric) => ({
      queryKey: ["telemetry", "seed", uuid, metric, seedFrom],
      queryFn: ({ signal }: { signal: AbortSignal }) =>
        api<RawSeries>(telemetryPath(uuid), { query: { metric, from: seedFrom, bucket: 0, limit: 1000 }, signal }),
      staleTime: Infinity,
    })),
  });

  const toggle = (m: string) =>
    setSelected(chosen.includes(m) ? chosen.filter((x) => x !== m) : [...chosen, m].slice(-MAX_SELECTED));
  const unitOf = (m: string) => metrics.data?.find((x) => x.metric === m)?.unit ?? null;
  const latest = (m: string) => {
    const p = live[`${uuid}/${m}`]?.at(-1);
    return p ? p.v : metrics.data?.find((x) => x.metric === m)?.value;
  };

  return (
    <Card variant="outlined">
      <CardContent>
        <Stack direction="row" alignItems="center" spacing={1} sx={{ mb: 1 }}>
          <Typography variant="h6" component="h2" sx={{ flexGrow: 1 }}>Live metrics</Typography>
          <StatusChip status={status.status === "open" ? "online" : status.status === "reconnecting" ? "pending" : "offline"}
            label={status.status === "open" ? "live" : status.status} />
        </Stack>
        {status.error && status.status !== "open" && <ErrorAlert error={`Live stream: ${status.error}`} />}
        {metrics.isPending ? (
          <Loading label="Loading metrics" />
        ) : metrics.isError ? (
          <ErrorAlert error={metrics.error} onRetry={() => void metrics.refetch()} />
        ) : names.length === 0 ? (
          <Typography color="text.secondary">
            No readings from this device yet. Charts start as soon as it sends some.
          </Typography>
        ) : (
          <>
            <Box sx={{ display: "flex", flexWrap: "wrap", gap: 1, mb: 2 }} role="group" aria-label="Metrics to chart">
              {names.map((m) => {
                const v = latest(m);
                return (
                  <Chip key={m} clickable color={chosen.includes(m) ? "primary" : "default"}
                    variant={chosen.includes(m) ? "filled" : "outlined"} aria-pressed={chosen.includes(m)}
                    onClick={() => toggle(m)}
                    label={`${m}${v !== undefined ? ` ${+v.toFixed(2)}${unitOf(m) ? ` ${unitOf(m)}` : ""}` : ""}`} />
                );
              })}
            </Box>
            <Suspense fallback={<Loading label="Loading charts" />}>
              <Grid container spacing={2}>
                {chosen.map((m, i) => {
                  const seed = (seeds[i]?.data?.readings ?? []).map((r) => ({ t: Date.parse(r.ts), v: r.value }));
                  const points = mergePoints(seed, live[`${uuid}/${m}`] ?? [], now - WINDOW_MS);
                  return (
                    <Grid key={m} size={{ xs: 12, md: 6 }}>
                      <Typography variant="subtitle2" component="h3">{m}</Typography>
                      {seeds[i]?.isError && <ErrorAlert error={seeds[i]?.error} />}
                      <LiveChart label={m} points={points} unit={unitOf(m)} windowMs={WINDOW_MS} now={now} />
                    </Grid>
                  );
                })}
              </Grid>
            </Suspense>
          </>
        )}
      </CardContent>
    </Card>
  );
}
