// Fleets, releases, deploying a release and watching its rollout (routers/fleets.py).
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api } from "./client";

export interface Fleet {
  id: number;
  name: string;
  description: string | null;
  deviceCount: number;
  createdAt: string;
}

export type ServiceState = "running" | "stopped" | "paused";
export type RestartPolicy = "no" | "always" | "on-failure" | "unless-stopped";

/** One service of a target document as the API stores it; fields the editor does not show are kept as they are. */
export interface ServiceConfig {
  image: string;
  command?: string[] | string | null;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  restart?: RestartPolicy;
  [other: string]: unknown;
}

export interface TargetService {
  serviceId: number;
  serviceName: string;
  imageName?: string | null;
  state?: ServiceState;
  config: ServiceConfig;
}

export interface TargetApp {
  appId: number;
  appName: string;
  services: TargetService[];
}

export interface TargetDocument {
  apps: Record<string, TargetApp>;
  config?: Record<string, unknown>;
}

export interface Release {
  id: number;
  name: string;
  fleetId: number | null;
  document: TargetDocument;
  notes: string | null;
  createdBy: string;
  createdAt: string;
}

export interface ReleaseCreate {
  name: string;
  fleet?: number | null;
  target: TargetDocument;
  notes?: string | null;
}

/** Where a release goes: a fleet, a tag (`key` or `key:value`), or both (devices of the fleet with the tag). */
export interface Selection {
  fleet?: string;
  tag?: string;
}

export interface ReleaseDeployed {
  releaseId: number;
  devices: string[];
  count: number;
}

export const ROLLOUT_STATES = ["failed", "offline", "updating", "other_release", "converged"] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export interface RolloutDevice {
  uuid: string;
  name: string;
  online: boolean;
  targetVersion: number;
  targetReleaseId: number | null;
  appliedVersion: number | null;
  status: string | null;
  reportedAt: string | null;
  state: RolloutState;
}

export interface Rollout {
  releaseId: number;
  summary: Record<RolloutState, number>;
  items: RolloutDevice[];
  total: number;
  limit: number;
  offset: number;
}

export interface RolloutQuery extends Selection {
  state?: RolloutState;
  limit: number;
  offset: number;
}

const FLEETS = ["fleets"] as const;
const RELEASES = ["releases"] as const;

export function useFleets() {
  return useQuery({ queryKey: FLEETS, queryFn: () => api<Fleet[]>("/api/v1/fleets") });
}

export function useFleet(id: number) {
  return useQuery({ queryKey: [...FLEETS, id], queryFn: () => api<Fleet>(`/api/v1/fleets/${id}`) });
}

export function useCreateFleet() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: { name: string; description?: string | null }) =>
      api<Fleet>("/api/v1/fleets", { method: "POST", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: FLEETS }),
  });
}

export function useUpdateFleet(id: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: { description: string | null }) =>
      api<Fleet>(`/api/v1/fleets/${id}`, { method: "PATCH", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: FLEETS }),
  });
}

export function useDeleteFleet() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => api<void>(`/api/v1/fleets/${id}`, { method: "DELETE" }),
    onSuccess: () => qc.invalidateQueries({ queryKey: FLEETS }),
  });
}

export function useReleases(opts: { fleet?: number; limit: number; offset: number }) {
  return useQuery({
    queryKey: [...RELEASES, "list", opts],
    queryFn: () => api<Release[]>("/api/v1/releases", { query: { fleet: opts.fleet, limit: opts.limit,
      offset: opts.offset } }),
    placeholderData: keepPreviousData,
  });
}

export function useRelease(id: number | undefined) {
  return useQuery({
    queryKey: [...RELEASES, id],
    queryFn: () => api<Release>(`/api/v1/releases/${id}`),
    enabled: id !== undefined,
  });
}

export function useCreateRelease() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: ReleaseCreate) => api<Release>("/api/v1/releases", { method: "POST", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: RELEASES }),
  });
}

export function useDeployRelease(id: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (selection: Selection) =>
      api<ReleaseDeployed>(`/api/v1/releases/${id}/deploy`, { method: "POST", body: selection }),
    onSuccess: () => qc.invalidateQueries({ queryKey: [...RELEASES, id, "rollout"] }),
  });
}

/** Refreshed every few seconds while shown: the devices converge without a reload. */
export function useRollout(id: number, q: RolloutQuery, refreshMs = 3000) {
  return useQuery({
    queryKey: [...RELEASES, id, "rollout", q],
    queryFn: () => api<Rollout>(`/api/v1/releases/${id}/rollout`, { query: { ...q } }),
    refetchInterval: refreshMs,
    placeholderData: keepPreviousData,
  });
}
