// The licence in force and its usage (routers/license.py); owners install a new one.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api } from "./client";

export interface Licence {
  mode: "licensed" | "free" | string;
  plan: string;
  customerId: string | null;
  features: Record<string, unknown>;
  limits: Record<string, unknown>;
  /** `{isTrial, expiresAt}` with expiresAt in Unix seconds. */
  trial: { isTrial?: boolean; expiresAt?: number | null; [k: string]: unknown };
  subscription: { status?: string; [k: string]: unknown };
  expiresAt: string | null;
  reason: string | null;
  usage: { devices?: number; maxDevices?: number | null; [k: string]: unknown };
}

const LICENCE = ["licence"] as const;

export function useLicence() {
  return useQuery({ queryKey: LICENCE, queryFn: () => api<Licence>("/api/v1/license") });
}

export function useInstallLicence() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (token: string) => api<Licence>("/api/v1/license", { method: "PUT", body: { token } }),
    onSuccess: (licence) => qc.setQueryData(LICENCE, licence),
  });
}
