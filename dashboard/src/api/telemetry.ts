// Telemetry read back (src/iotistic/cloud/routers/telemetry.py): each device's metrics and their history.

import { keepPreviousData, useQueries, useQuery } from "@tanstack/react-query";

import { api } from "./client";
import { listDevices } from "./devices";

export interface TelemetryMetric {
  metric: string;
  ts: string;
  value: number;
  unit: string | null;
}

export interface TelemetryBucket {
  ts: string;
  avg: number;
  min: number;
  max: number;
  count: number;
}

export interface TelemetrySeries {
  device: string;
  metric: string;
  from: string;
  to: string;
  /** seconds; 0 for raw readings */
  bucket: number;
  buckets?: TelemetryBucket[];
  readings?: { ts: string; value: number }[];
  truncated?: boolean;
}

export interface SeriesQuery {
  from: string;
  to: string;
  maxPoints: number;
  /** seconds; 0 for raw readings */
  bucket?: number;
  /** raw readings: at most this many */
  limit?: number;
  /** raw readings: the range's newest `limit` rather than its oldest */
  newest?: boolean;
}

export const telemetryKeys = {
  metrics: (uuid: string) => ["telemetry", "metrics", uuid] as const,
  series: (uuid: string, metric: string, q: SeriesQuery) => ["telemetry", "series", uuid, metric, q] as const,
  pick: (text: string) => ["telemetry", "device-pick", text] as const,
};

const devicePath = (uuid: string) => `/api/v1/devices/${encodeURIComponent(uuid)}/telemetry`;

export function getSeries(uuid: string, metric: string, q: SeriesQuery, signal?: AbortSignal) {
  return api<TelemetrySeries>(devicePath(uuid), { query: { metric, ...q }, signal });
}

/** Each device's metrics (with the latest value), for several devices at once. */
export function useDevicesMetrics(uuids: readonly string[]) {
  return useQueries({
    queries: uuids.map((uuid) => ({
      queryKey: telemetryKeys.metrics(uuid),
      queryFn: ({ signal }: { signal: AbortSignal }) => api<TelemetryMetric[]>(`${devicePath(uuid)}/metrics`,
        { signal }),
      staleTime: 30_000,
    })),
  });
}

/** One history series per (device, metric) pair over the same time range. */
export function useSeries(pairs: readonly { device: string; metric: string }[], q: SeriesQuery | null) {
  return useQueries({
    queries: pairs.map(({ device, metric }) => ({
      queryKey: telemetryKeys.series(device, metric, q ?? { from: "", to: "", maxPoints: 0 }),
      queryFn: ({ signal }: { signal: AbortSignal }) => getSeries(device, metric, q as SeriesQuery, signal),
      enabled: q !== null,
      placeholderData: keepPreviousData,
      // A failed range (e.g. a bucket too small) will fail again: show the message instead of retrying.
      retry: false,
    })),
  });
}

/** Devices whose name or uuid contains `text`, for pickers (the first 20). */
export function useDeviceSearch(text: string) {
  return useQuery({
    queryKey: telemetryKeys.pick(text),
    queryFn: ({ signal }) => listDevices({ text: text || undefined }, 20, 0, signal),
    placeholderData: keepPreviousData,
    staleTime: 10_000,
  });
}
