import type { CurrentState, ServiceAction, ServiceState, Target } from "../../api/devices";

/** One service as the page shows it: what the deployed target wants beside what the device last reported. */
export interface ServiceRow {
  key: string;
  appId: number;
  appName: string;
  serviceName: string;
  image: string;
  /** Wanted state in the deployed target; null when the device runs something no longer in the target. */
  target: ServiceState | null;
  /** The device's reported status (running, exited, downloading, …); null before it reports this service. */
  reported: string | null;
  reportedImage: string | null;
  restartCount: number | null;
  error: string | null;
}

export function serviceRows(target: Target | undefined, current: CurrentState | undefined): ServiceRow[] {
  const rows = new Map<string, ServiceRow>();
  for (const [appKey, app] of Object.entries(target?.deployed.apps ?? {})) {
    for (const s of app.services) {
      const key = `${appKey}/${s.serviceName}`;
      rows.set(key, { key, appId: app.appId, appName: app.appName, serviceName: s.serviceName,
        image: s.config.image, target: s.state ?? "running", reported: null, reportedImage: null,
        restartCount: null, error: null });
    }
  }
  for (const [appKey, app] of Object.entries(current?.state?.apps ?? {})) {
    for (const s of app.services ?? []) {
      const key = `${app.appId ?? appKey}/${s.serviceName}`;
      const row = rows.get(key) ?? { key, appId: app.appId ?? Number(appKey), appName: app.appName ?? appKey,
        serviceName: s.serviceName, image: s.image ?? "", target: null, reported: null, reportedImage: null,
        restartCount: null, error: null };
      row.reported = s.status;
      row.reportedImage = s.image ?? null;
      row.restartCount = s.restartCount ?? null;
      row.error = s.error ?? null;
      rows.set(key, row);
    }
  }
  return [...rows.values()].sort((a, b) => a.appId - b.appId || a.serviceName.localeCompare(b.serviceName));
}

/** The controls that change something for a service in `state` (no "start" for a running service). */
export function actionsFor(state: ServiceState | null): ServiceAction[] {
  switch (state) {
    case "running":
      return ["pause", "stop", "restart"];
    case "paused":
      return ["start", "stop"];
    case "stopped":
      return ["start"];
    default:
      return [];
  }
}

export const ACTION_LABEL: Record<ServiceAction, string> = {
  start: "Start", stop: "Stop", pause: "Pause", restart: "Restart",
};

/** Whether the device has caught up with the deployed target. */
export function convergence(target: Target | undefined, current: CurrentState | undefined):
  "converged" | "updating" | "error" | "unknown" {
  const applied = current?.state?.appliedVersion;
  if (!target || applied === undefined) return "unknown";
  if (current?.state?.status === "error") return "error";
  return applied >= target.version ? "converged" : "updating";
}
