// MQTT accounts and their ACL rules (routers/mqtt.py). Passwords appear once, in the response that made them.
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api } from "./client";

export type MqttAccountKind = "device" | "service" | "integration";
export type MqttAccess = "read" | "write" | "readwrite";

export interface MqttRule {
  id: number;
  topic: string;
  access: MqttAccess;
}

export interface MqttAccount {
  id: number;
  username: string;
  kind: MqttAccountKind;
  deviceUuid: string | null;
  isActive: boolean;
  createdAt: string;
  rules: MqttRule[];
}

export interface MqttAccountPage {
  items: MqttAccount[];
  total: number;
  limit: number;
  offset: number;
}

/** `password` is the generated one, shown only in this response (null when the request chose it). */
export interface MqttAccountWithPassword extends MqttAccount {
  password: string | null;
}

export interface MqttAccountCreate {
  username: string;
  kind: "service" | "integration";
  password?: string;
  rules: { topic: string; access: MqttAccess }[];
}

const ACCOUNTS = ["mqtt-accounts"] as const;
const base = "/api/v1/mqtt/accounts";

export function useMqttAccounts(q: { kind?: MqttAccountKind; limit: number; offset: number }) {
  return useQuery({
    queryKey: [...ACCOUNTS, "list", q],
    queryFn: () => api<MqttAccountPage>(base, { query: { ...q } }),
    placeholderData: keepPreviousData,
  });
}

export function useMqttAccount(id: number) {
  return useQuery({ queryKey: [...ACCOUNTS, id], queryFn: () => api<MqttAccount>(`${base}/${id}`) });
}

export function useCreateMqttAccount() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: MqttAccountCreate) => api<MqttAccountWithPassword>(base, { method: "POST", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ACCOUNTS }),
  });
}

export function useUpdateMqttAccount(id: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: { isActive?: boolean; resetPassword?: boolean }) =>
      api<MqttAccountWithPassword>(`${base}/${id}`, { method: "PATCH", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ACCOUNTS }),
  });
}

export function useDeleteMqttAccount() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => api<void>(`${base}/${id}`, { method: "DELETE" }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ACCOUNTS }),
  });
}

export function useAddMqttRule(accountId: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: { topic: string; access: MqttAccess }) =>
      api<MqttRule>(`${base}/${accountId}/rules`, { method: "POST", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ACCOUNTS }),
  });
}

export function useDeleteMqttRule(accountId: number) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (ruleId: number) => api<void>(`${base}/${accountId}/rules/${ruleId}`, { method: "DELETE" }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ACCOUNTS }),
  });
}
