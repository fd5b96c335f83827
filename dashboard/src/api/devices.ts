import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api, download } from "./client";
import type { FleetRef } from "./types";

export type DeviceStatus = "registered" | "active" | "disabled";

export interface Device {
  id: number;
  uuid: string;
  name: string;
  device_type: string;
  status: DeviceStatus;
  online: boolean;
  fleet: FleetRef | null;
  tags: Record<string, string>;
  last_seen_at: string | null;
  os_version: string | null;
  agent_version: string | null;
  ip_address: string | null;
  created_at: string;
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
  fleet?: string;
  /** `key` or `key:value` */
  tag?: string;
  /** part of the name or uuid */
  text?: string;
}

export const deviceKeys = {
  all: ["devices"] as const,
  list: (f: DeviceFilters, limit: number, offset: number) => ["devices", "list", f, limit, offset] as const,
  one: (uuid: string) => ["devices", "one", uuid] as const,
  part: (uuid: string, part: string) => ["devices", "one", uuid, part] as const,
};

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

const devicePath = (uuid: string) => `/api/v1/devices/${encodeURIComponent(uuid)}`;

export function useDevice(uuid: string) {
  return useQuery({
    queryKey: deviceKeys.one(uuid),
    queryFn: ({ signal }) => api<Device>(devicePath(uuid), { signal }),
    refetchInterval: 10_000,
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

export function downloadVpnConfig(device: Pick<Device, "uuid" | "name">): Promise<void> {
  return download(`${devicePath(device.uuid)}/vpn/config`, `${device.name}.ovpn`);
}
