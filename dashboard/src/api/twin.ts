// The digital twin: the building graph, IFC imports, where devices are and what they read there
// (src/iotistic/cloud/routers/twin.py and twin_imports.py; camelCase on the wire).

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api, upload } from "./client";

export interface TwinNode {
  id: number;
  kind: string;
  name: string;
  globalId?: string | null;
  ifcClass?: string | null;
  source?: string | null;
  /** Device nodes: the registry device's uuid */
  device?: string | null;
}

export interface GraphLink {
  id: number;
  source: number;
  target: number;
  kind: string;
}

export interface TwinGraph {
  nodes: TwinNode[];
  links: GraphLink[];
  truncated: boolean;
}

export interface ImportReport {
  schema: string;
  counts: Record<string, number>;
  nodes: number;
  edges: number;
  source: string;
  created: Record<string, number>;
  updated: Record<string, number>;
  deleted: Record<string, number>;
  edgesCreated: number;
  edgesDeleted: number;
  lostMappings: { device: string; globalId: string }[];
  warnings: string[];
}

export type ImportStatus = "queued" | "running" | "succeeded" | "failed";

export interface ImportJob {
  id: string;
  status: ImportStatus;
  source: string;
  filename: string;
  sizeBytes: number;
  progress: { phase: string; percent: number };
  report: ImportReport | null;
  error: string | null;
  createdBy: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export interface Reading {
  metric: string;
  value: number;
  unit: string | null;
  ts: string;
}

export interface DeviceInside {
  uuid: string;
  name: string;
  /** the device's own Device node */
  nodeId: number;
  /** the space or element it is mapped to */
  locatedIn: number | null;
}

export interface NodeTelemetry {
  node: TwinNode;
  devices: (DeviceInside & { readings: Reading[] })[];
}

export interface Mapping {
  device: string;
  deviceName: string;
  nodeId: number;
  place: { id: number; kind: string; name: string; globalId: string | null };
}

export const twinKeys = {
  all: ["twin"] as const,
  graph: ["twin", "graph"] as const,
  telemetry: (nodeId: number) => ["twin", "telemetry", nodeId] as const,
  mappings: ["twin", "mappings"] as const,
  imports: ["twin", "imports"] as const,
  importJob: (id: string) => ["twin", "imports", id] as const,
};

const TWIN = "/api/v1/twin";
/** The most nodes the 3D view draws; the API says when the graph has more. */
export const GRAPH_LIMIT = 5000;

export function useTwinGraph() {
  return useQuery({
    queryKey: twinKeys.graph,
    queryFn: ({ signal }) => api<TwinGraph>(`${TWIN}/graph`, { query: { limit: GRAPH_LIMIT }, signal }),
  });
}

/** The devices inside a node and the latest reading of each of their metrics, refreshed while shown. */
export function useNodeTelemetry(nodeId: number | null) {
  return useQuery({
    queryKey: twinKeys.telemetry(nodeId ?? 0),
    queryFn: ({ signal }) => api<NodeTelemetry>(`${TWIN}/nodes/${nodeId}/telemetry`, { signal }),
    enabled: nodeId !== null,
    refetchInterval: 10_000,
  });
}

export function useMappings() {
  return useQuery({
    queryKey: twinKeys.mappings,
    queryFn: ({ signal }) => api<Mapping[]>(`${TWIN}/mappings`, { query: { limit: 5000 }, signal }),
  });
}

const locationPath = (uuid: string) => `${TWIN}/devices/${encodeURIComponent(uuid)}/location`;

/** Mapping changes the graph (a Device node and its edge), what nodes contain, and the mapping list. */
function useTwinMutation<V, R>(fn: (v: V) => Promise<R>) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: fn,
    onSuccess: () => qc.invalidateQueries({ queryKey: twinKeys.all }),
  });
}

export function useMapDevice() {
  return useTwinMutation(({ device, node }: { device: string; node: number }) =>
    api<Mapping>(locationPath(device), { method: "PUT", body: { node } }));
}

export function useUnmapDevice() {
  return useTwinMutation((device: string) => api<void>(locationPath(device), { method: "DELETE" }));
}

/** Upload an IFC file; `onProgress` gets the uploaded fraction. The answer is the queued import job. */
export function uploadIfc(file: File, opts: { source?: string; onProgress?: (fraction: number) => void;
  signal?: AbortSignal } = {}): Promise<ImportJob> {
  const form = new FormData();
  if (opts.source?.trim()) form.append("source", opts.source.trim());
  form.append("file", file, file.name);
  return upload<ImportJob>(`${TWIN}/imports`, form, { onProgress: opts.onProgress, signal: opts.signal });
}

export function isFinished(job: Pick<ImportJob, "status"> | undefined): boolean {
  return job?.status === "succeeded" || job?.status === "failed";
}

/** Follows an import job until it succeeds or fails, then refreshes the graph. */
export function useImportJob(id: string | null, initial?: ImportJob) {
  const qc = useQueryClient();
  return useQuery({
    queryKey: twinKeys.importJob(id ?? ""),
    queryFn: async ({ signal }) => {
      const key = twinKeys.importJob(id ?? "");
      const before = qc.getQueryData<ImportJob>(key)?.status;
      const job = await api<ImportJob>(`${TWIN}/imports/${encodeURIComponent(id ?? "")}`, { signal });
      if (job.status === "succeeded" && before !== "succeeded") {
        void qc.invalidateQueries({ queryKey: twinKeys.graph });
        void qc.invalidateQueries({ queryKey: twinKeys.mappings });
        void qc.invalidateQueries({ queryKey: ["twin", "telemetry"] });
      }
      return job;
    },
    enabled: id !== null,
    // Shown until the first poll, which goes out at once: the upload's answer is the job as it was queued.
    placeholderData: initial,
    refetchInterval: (query) => (isFinished(query.state.data) ? false : 1000),
  });
}

export function useImports(enabled: boolean) {
  return useQuery({
    queryKey: twinKeys.imports,
    queryFn: ({ signal }) => api<ImportJob[]>(`${TWIN}/imports`, { query: { limit: 10 }, signal }),
    enabled,
  });
}
