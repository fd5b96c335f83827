// The release editor's form model and its conversion to and from the API's target document. Only the fields the
// editor shows are rewritten; everything else a service had (labels, probes, resources, networks...) is kept.
import type { Release, RestartPolicy, ServiceConfig, ServiceState, TargetDocument } from "../../api/fleets";

export interface ServiceDraft {
  serviceId: number;
  serviceName: string;
  image: string;
  state: ServiceState;
  restart: RestartPolicy;
  /** A command line, or a JSON array of arguments. */
  command: string;
  /** `KEY=value`, one a line. */
  environment: string;
  /** One a line. */
  ports: string;
  volumes: string;
  /** The service's other config fields, sent back unchanged. */
  kept: Record<string, unknown>;
}

export interface AppDraft {
  appId: number;
  appName: string;
  services: ServiceDraft[];
}

export interface ReleaseDraft {
  name: string;
  fleet: number | "";
  notes: string;
  apps: AppDraft[];
  /** The document's device config, sent back unchanged. */
  config: Record<string, unknown>;
}

export const RESTART_POLICIES: RestartPolicy[] = ["unless-stopped", "always", "on-failure", "no"];
export const SERVICE_STATES: ServiceState[] = ["running", "stopped", "paused"];

const EDITED = new Set(["image", "command", "environment", "ports", "volumes", "restart"]);

export function newService(serviceId: number): ServiceDraft {
  return { serviceId, serviceName: "", image: "", state: "running", restart: "unless-stopped", command: "",
    environment: "", ports: "", volumes: "", kept: {} };
}

export function newApp(appId: number): AppDraft {
  return { appId, appName: "", services: [newService(1)] };
}

export function emptyDraft(fleet: number | "" = ""): ReleaseDraft {
  return { name: "", fleet, notes: "", apps: [newApp(1)], config: {} };
}

export function nextId(ids: number[]): number {
  return ids.length ? Math.max(...ids.filter(Number.isFinite), 0) + 1 : 1;
}

function commandText(command: ServiceConfig["command"]): string {
  if (command == null) return "";
  return Array.isArray(command) ? JSON.stringify(command) : command;
}

function parseCommand(text: string): string[] | string | undefined {
  const t = text.trim();
  if (!t) return undefined;
  if (t.startsWith("[")) {
    try {
      const parsed: unknown = JSON.parse(t);
      if (Array.isArray(parsed) && parsed.every((p) => typeof p === "string")) return parsed as string[];
    } catch {
      // not JSON: the API gets it as a command line and the device's shell splits it
    }
  }
  return t;
}

function lines(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

/** `KEY=value` lines; a line without `=` is a name with an empty value, which the API then judges. */
export function parseEnvironment(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    const key = (at < 0 ? line : line.slice(0, at)).trim();
    env[key] = at < 0 ? "" : line.slice(at + 1);
  }
  return env;
}

export function fromRelease(release: Release): ReleaseDraft {
  const apps = Object.values(release.document.apps ?? {}).map((app) => ({
    appId: app.appId,
    appName: app.appName,
    services: app.services.map((s): ServiceDraft => {
      const kept = Object.fromEntries(Object.entries(s.config).filter(([k]) => !EDITED.has(k)));
      return {
        serviceId: s.serviceId,
        serviceName: s.serviceName,
        image: s.config.image,
        state: s.state ?? "running",
        restart: s.config.restart ?? "unless-stopped",
        command: commandText(s.config.command),
        environment: Object.entries(s.config.environment ?? {}).map(([k, v]) => `${k}=${v}`).join("\n"),
        ports: (s.config.ports ?? []).join("\n"),
        volumes: (s.config.volumes ?? []).join("\n"),
        kept,
      };
    }),
  }));
  return { name: release.name, fleet: release.fleetId ?? "", notes: release.notes ?? "",
    apps: apps.length ? apps : [newApp(1)], config: release.document.config ?? {} };
}

export function toDocument(draft: ReleaseDraft): TargetDocument {
  const apps: TargetDocument["apps"] = {};
  for (const app of draft.apps) {
    apps[String(app.appId)] = {
      appId: app.appId,
      appName: app.appName.trim(),
      services: app.services.map((s) => {
        const config: ServiceConfig = {
          ...s.kept,
          image: s.image.trim(),
          environment: parseEnvironment(s.environment),
          ports: lines(s.ports),
          volumes: lines(s.volumes),
          restart: s.restart,
        };
        const command = parseCommand(s.command);
        if (command !== undefined) config.command = command;
        return { serviceId: s.serviceId, serviceName: s.serviceName.trim(), state: s.state, config };
      }),
    };
  }
  return { apps, config: draft.config };
}

/** What the API cannot report by field because the document's shape hides it: two apps with one id collapse
 *  into one key. */
export function draftProblems(draft: ReleaseDraft): string[] {
  const ids = draft.apps.map((a) => a.appId);
  const dupes = [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))];
  return dupes.map((id) => `two apps have the id ${id}; each app needs its own id`);
}

export function servicePath(appId: number, index: number, field: string): string {
  return `target.apps.${appId}.services.${index}.${field}`;
}
