import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api, download } from "./client";
import type { FleetRef } from "./types";

export type DeviceStatus = "registered" | "active" | "disabled";
export const DEVICE_STATUSES: DeviceStatus[] = ["registered", "active", "disabled"];

export interface Device {
  id: number;
  uuid: string;
  name: string;
  deviceType: string;
  status: DeviceStatus;
  online: boolean;
  fleet: FleetRef | null;
  tags: Record<string, string>;
  lastSeenAt: string | null;
  osVersion: string | null;
  agentVersion: string | null;
  ipAddress: string | null;
  createdAt: string;
}

export interface DevicePage {
  items: Device[];
  total: number;
  limit: number;
  offset: number;
}

/** The list's filters, exactly the query parameters GET /api/v1/devices accepts. */
export interface DeviceFilters {
  status?: DeviceStatus;
  online?: boolean;
  /** fleet id or name */
  fleet?: string;
  /** `key` or `key:value` */
  tag?: string;
  /** part of the name or uuid */
  text?: string;
}

// The target-state document (core/schemas/target_state.py), as the API returns it.
export type ServiceState = "running" | "stopped" | "paused";

export interface TargetService {
  serviceId: number;
  serviceName: string;
  imageName?: string | null;
  state?: ServiceState;
  config: { image: string; [key: string]: unknown };
}

export interface TargetApp {
  appId: number;
  appName: string;
  services: TargetService[];
}

export interface TargetDocument {
  apps: Record<string, TargetApp>;
  config: Record<string, unknown>;
}

export interface Target {
  staged: TargetDocument;
  deployed: TargetDocument;
  version: number;
  releaseId: number | null;
  stagedAt: string;
  deployedAt: string | null;
  pending: boolean;
}

// What the device reports (core/schemas/reports.py), merged over time by the cloud.
export interface ReportedService {
  serviceName: string;
  serviceId?: number | null;
  image?: string | null;
  status: string;
  containerId?: string | null;
  error?: string | null;
  restartCount?: number | null;
}

export interface ReportedApp {
  appId?: number | null;
  appName?: string | null;
  services: ReportedService[];
}

export interface CurrentState {
  uuid: string;
  state: {
    apps?: Record<string, ReportedApp>;
    appliedVersion?: number;
    status?: string;
    config?: Record<string, unknown>;
  } | null;
  reportedAt: string | null;
}

export interface LogLine {
  timestamp: string;
  serviceName: string | null;
  message: string;
  isStderr: boolean;
}

export type ServiceAction = "start" | "stop" | "pause" | "restart";

export const deviceKeys = {
  all: ["devices"] as const,
  list: (f: DeviceFilters, limit: number, offset: number) => ["devices", "list", f, limit, offset] as const,
  one: (uuid: string) => ["devices", "one", uuid] as const,
  part: (uuid: string, part: string) => ["devices", "one", uuid, part] as const,
};

const devicePath = (uuid: string) => `/api/v1/devices/${encodeURIComponent(uuid)}`;

export function listDevices(f: DeviceFilters, limit: number, offset: number, signal?: AbortSignal) {
  return api<DevicePage>("/api/v1/devices", { query: { ...f, limit, offset }, signal });
}

export function useDevices(f: DeviceFilters, limit: number, offset: number) {
  return useQuery({
    queryKey: deviceKeys.list(f, limit, offset),
    queryFn: ({ signal }) => listDevices(f, limit, offset, signal),
    // Keep the current page on screen while the next one loads: no flashing table when paging 10,000 devices.
    placeholderData: keepPreviousData,
    refetchInterval: 15_000,
  });
}

export function useDevice(uuid: string) {
  return useQuery({
    queryKey: deviceKeys.one(uuid),
    queryFn: ({ signal }) => api<Device>(devicePath(uuid), { signal }),
    refetchInterval: 10_000,
  });
}

export function useTarget(uuid: string) {
  return useQuery({
    queryKey: deviceKeys.part(uuid, "target"),
    queryFn: ({ signal }) => api<Target>(`${devicePath(uuid)}/target-state`, { signal }),
  });
}

export function useCurrentState(uuid: string) {
  return useQuery({
    queryKey: deviceKeys.part(uuid, "current"),
    queryFn: ({ signal }) => api<CurrentState>(`${devicePath(uuid)}/current-state`, { signal }),
    // Devices report on change, throttled: a few seconds is as fresh as it gets.
    refetchInterval: 5_000,
  });
}

export function useDeviceLogs(uuid: string, service: string | undefined, enabled: boolean) {
  return useQuery({
    queryKey: deviceKeys.part(uuid, `logs:${service ?? ""}`),
    queryFn: ({ signal }) =>
      api<LogLine[]>(`${devicePath(uuid)}/logs`, { query: { service, limit: 500 }, signal }),
    refetchInterval: enabled ? 3_000 : false,
  });
}

export function useSaveTags(uuid: string) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (tags: Record<string, string>) =>
      api<Record<string, string>>(`${devicePath(uuid)}/tags`, { method: "PUT", body: tags }),
    onSuccess: () => qc.invalidateQueries({ queryKey: deviceKeys.all }),
  });
}

export function useServiceAction(uuid: string) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ appId, service, action }: { appId: number; service: string; action: ServiceAction }) =>
      api<Target>(`${devicePath(uuid)}/apps/${appId}/services/${encodeURIComponent(service)}/${action}`,
        { method: "POST" }),
    onSuccess: (target) => {
      qc.setQueryData(deviceKeys.part(uuid, "target"), target);
      void qc.invalidateQueries({ queryKey: deviceKeys.part(uuid, "current") });
    },
  });
}

export function useDeployStaged(uuid: string) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: () => api<Target>(`${devicePath(uuid)}/deploy`, { method: "POST" }),
    onSuccess: (target) => qc.setQueryData(deviceKeys.part(uuid, "target"), target),
  });
}

export function downloadVpnConfig(device: Pick<Device, "uuid" | "name">): Promise<void> {
  return download(`${devicePath(device.uuid)}/vpn/config`, `${device.name}.ovpn`);
}

/** Fleets for the filter and the device page (the fleets area has the full client; this needs id and name). */
export function useFleetOptions() {
  return useQuery({
    queryKey: ["fleets"],
    queryFn: ({ signal }) => api<FleetRef[]>("/api/v1/fleets", { signal }),
    staleTime: 60_000,
  });
}
