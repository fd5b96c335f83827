import Box from "@mui/material/Box";
import Paper from "@mui/material/Paper";
import Tab from "@mui/material/Tab";
import Tabs from "@mui/material/Tabs";
import { useQueries } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { useSearchParams } from "react-router-dom";

import { api } from "../../api/client";
import { deviceKeys, type Device } from "../../api/devices";
import { useDevicesMetrics } from "../../api/telemetry";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { PageHeader } from "../../components/PageHeader";
import { DevicePicker, type DeviceRef } from "./DevicePicker";
import { HistoryPanel } from "./HistoryPanel";
import { LivePanel } from "./LivePanel";
import { MetricPicker } from "./MetricPicker";

const MAX_DEVICES = 10;
const MAX_METRICS = 8;

/** Device names for uuids that came in the address (`/metrics?device=<uuid>`), e.g. from a device page. */
function useNames(uuids: string[], known: Map<string, string>) {
  const missing = uuids.filter((u) => !known.has(u));
  const found = useQueries({
    queries: missing.map((uuid) => ({
      queryKey: deviceKeys.one(uuid),
      queryFn: ({ signal }: { signal: AbortSignal }) => api<Device>(`/api/v1/devices/${encodeURIComponent(uuid)}`,
        { signal }),
    })),
  });
  const names = new Map(known);
  found.forEach((q, i) => names.set(missing[i], q.data?.name ?? missing[i]));
  return { names, errors: found.filter((q) => q.isError).map((q) => q.error) };
}

/** Live charts and history for several devices and metrics at once. The selection lives in the address, so a
 *  view can be bookmarked or linked from a device page. */
export default function MetricsPage() {
  const [params, setParams] = useSearchParams();
  const uuids = params.getAll("device").slice(0, MAX_DEVICES);
  const chosenMetrics = params.getAll("metric").slice(0, MAX_METRICS);
  const tab = params.get("view") === "history" ? "history" : "live";
  const [picked, setPicked] = useState(() => new Map<string, string>());
  const { names, errors: nameErrors } = useNames(uuids, picked);
  const devices: DeviceRef[] = uuids.map((uuid) => ({ uuid, name: names.get(uuid) ?? uuid }));

  const update = (change: (p: URLSearchParams) => void) => {
    const next = new URLSearchParams(params);
    change(next);
    setParams(next, { replace: true });
  };

  const metricLists = useDevicesMetrics(uuids);
  const available = useMemo(() => {
    const units = new Map<string, string | null>();
    for (const q of metricLists) for (const m of q.data ?? []) if (!units.get(m.metric)) units.set(m.metric, m.unit);
    return [...units].map(([metric, unit]) => ({ metric, unit })).sort((a, b) => a.metric.localeCompare(b.metric));
  }, [metricLists]);
  const unitOf = (metric: string) => available.find((m) => m.metric === metric)?.unit ?? null;
  const metrics = chosenMetrics.length ? chosenMetrics : available.slice(0, MAX_METRICS).map((m) => m.metric);
  // Every chosen device with every chosen metric it has.
  const pairs = uuids.flatMap((device, i) => {
    const has = new Set((metricLists[i]?.data ?? []).map((m) => m.metric));
    return metrics.filter((m) => has.has(m)).map((metric) => ({ device, metric }));
  });
  const metricErrors = metricLists.filter((q) => q.isError).map((q) => q.error);
  const label = (uuid: string) => names.get(uuid) ?? uuid;
  const colorIndex = (uuid: string) => Math.max(0, uuids.indexOf(uuid));

  return (
    <Box>
      <PageHeader title="Metrics" subtitle="Live and recorded readings of several devices side by side" />
      <Paper variant="outlined" sx={{ p: 2, mb: 2, display: "flex", flexWrap: "wrap", gap: 2 }}>
        <DevicePicker max={MAX_DEVICES} value={devices} onChange={(chosen) => {
          setPicked((m) => new Map([...m, ...chosen.map((d) => [d.uuid, d.name] as const)]));
          update((p) => {
            p.delete("device");
            for (const d of chosen) p.append("device", d.uuid);
          });
        }} />
        <MetricPicker max={MAX_METRICS} available={available} value={chosenMetrics}
          loading={metricLists.some((q) => q.isFetching)}
          onChange={(chosen) => update((p) => {
            p.delete("metric");
            for (const m of chosen) p.append("metric", m);
          })} />
      </Paper>
      {[...nameErrors, ...metricErrors].slice(0, 1).map((e, i) => <ErrorAlert key={i} error={e} />)}
      {uuids.length === 0 ? (
        <EmptyState title="Choose devices">Pick one or more devices to chart their readings.</EmptyState>
      ) : (
        <>
          <Tabs value={tab} onChange={(_e, v: string) => update((p) => p.set("view", v))} sx={{ mb: 2 }}
            aria-label="Live or history">
            <Tab label="Live" value="live" id="metrics-tab-live" aria-controls="metrics-panel" />
            <Tab label="History" value="history" id="metrics-tab-history" aria-controls="metrics-panel" />
          </Tabs>
          <Box role="tabpanel" id="metrics-panel" aria-labelledby={`metrics-tab-${tab}`}>
            {tab === "history" && metricLists.every((q) => q.isSuccess) && pairs.length === 0 ? (
              <EmptyState title="No readings yet">
                The chosen devices have not sent {chosenMetrics.length ? "these metrics" : "any readings"} yet.
              </EmptyState>
            ) : tab === "live" ? (
              <LivePanel devices={uuids} metrics={chosenMetrics} pairs={pairs} label={label} unit={unitOf}
                colorIndex={colorIndex} />
            ) : (
              <HistoryPanel pairs={pairs} label={label} unit={unitOf} colorIndex={colorIndex} />
            )}
          </Box>
        </>
      )}
    </Box>
  );
}
