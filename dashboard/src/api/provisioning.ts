// Provisioning keys (routers/provisioning_keys.py): admins only; the secret exists in the create response alone.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api } from "./client";
import type { FleetRef } from "./types";

export interface ProvisioningKey {
  id: string;
  keyPrefix: string;
  description: string | null;
  fleet: FleetRef | null;
  maxDevices: number | null;
  devicesRegistered: number;
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string;
  createdBy: string | null;
}

export interface ProvisioningKeyCreated extends ProvisioningKey {
  key: string;
}

export interface ProvisioningKeyCreate {
  description?: string | null;
  fleet?: number | null;
  maxDevices?: number | null;
  expiresAt?: string | null;
}

const KEYS = ["provisioning-keys"] as const;

export function useProvisioningKeys(includeRevoked: boolean) {
  return useQuery({
    queryKey: [...KEYS, { includeRevoked }],
    queryFn: () => api<ProvisioningKey[]>("/api/v1/provisioning-keys",
      { query: { include_revoked: includeRevoked || undefined } }),
  });
}

export function useCreateProvisioningKey() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: ProvisioningKeyCreate) =>
      api<ProvisioningKeyCreated>("/api/v1/provisioning-keys", { method: "POST", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: KEYS }),
  });
}

export function useRevokeProvisioningKey() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => api<void>(`/api/v1/provisioning-keys/${encodeURIComponent(id)}`,
      { method: "DELETE" }),
    onSuccess: () => qc.invalidateQueries({ queryKey: KEYS }),
  });
}

/** What a key can still do, in words for its status chip. */
export function keyStatus(key: ProvisioningKey, now = Date.now()): "revoked" | "expired" | "used up" | "active" {
  if (key.revokedAt) return "revoked";
  if (key.expiresAt && Date.parse(key.expiresAt) <= now) return "expired";
  if (key.maxDevices !== null && key.devicesRegistered >= key.maxDevices) return "used up";
  return "active";
}
