import { useEffect, useRef, useState, useSyncExternalStore } from "react";

import { liveSocket, type LiveSocket, type LiveStatus, type Reading } from "./socket";

/** Calls `onReading` for each live reading of `devices` (optionally only `metrics`) while mounted. */
export function useLiveReadings(devices: string[], onReading: (r: Reading) => void,
  opts: { metrics?: string[]; socket?: LiveSocket; enabled?: boolean } = {}): void {
  const socket = opts.socket ?? liveSocket;
  const handler = useRef(onReading);
  handler.current = onReading;
  const deviceKey = devices.join(",");
  const metricKey = opts.metrics?.join(",");
  const enabled = opts.enabled ?? true;
  useEffect(() => {
    if (!enabled || !deviceKey) return;
    return socket.subscribe({
      devices: deviceKey.split(","),
      metrics: metricKey === undefined ? undefined : metricKey.split(","),
      onReading: (r) => handler.current(r),
    });
  }, [socket, deviceKey, metricKey, enabled]);
}

export interface LiveStatusInfo {
  status: LiveStatus;
  error: string | null;
}

/** The shared socket's state, for a "live / reconnecting" indicator. */
export function useLiveStatus(socket: LiveSocket = liveSocket): LiveStatusInfo {
  const snapshot = useRef<LiveStatusInfo>({ status: socket.status, error: socket.error });
  return useSyncExternalStore(
    (cb) => socket.onStatus(() => cb()),
    () => {
      const cur = snapshot.current;
      if (cur.status !== socket.status || cur.error !== socket.error) {
        snapshot.current = { status: socket.status, error: socket.error };
      }
      return snapshot.current;
    },
  );
}

export interface Point {
  /** milliseconds since the epoch */
  t: number;
  v: number;
}

/** Live readings kept per `device/metric` series, the last `windowMs` of them (for live charts). */
export function useLiveSeries(devices: string[], opts: { metrics?: string[]; windowMs?: number;
  maxPoints?: number; socket?: LiveSocket } = {}): Record<string, Point[]> {
  const windowMs = opts.windowMs ?? 5 * 60_000;
  const maxPoints = opts.maxPoints ?? 600;
  const [series, setSeries] = useState<Record<string, Point[]>>({});
  useLiveReadings(devices, (r) => {
    const t = Date.parse(r.ts);
    if (!Number.isFinite(t) || !Number.isFinite(r.value)) return;
    setSeries((prev) => {
      const key = `${r.device}/${r.metric}`;
      const cutoff = Date.now() - windowMs;
      const kept = (prev[key] ?? []).filter((p) => p.t >= cutoff);
      kept.push({ t, v: r.value });
      return { ...prev, [key]: kept.slice(-maxPoints) };
    });
  }, { metrics: opts.metrics, socket: opts.socket });
  return series;
}
