// Users and roles (routers/users.py): admins manage users up to admin, only owners manage owners.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api } from "./client";
import type { Role, User } from "./types";

export type UserAccount = User;

export interface UserCreate {
  email: string;
  password: string;
  role: Role;
}

export interface UserUpdate {
  role?: Role;
  isActive?: boolean;
  password?: string;
}

const USERS = ["users"] as const;

export function useUsers() {
  return useQuery({ queryKey: USERS, queryFn: () => api<UserAccount[]>("/api/v1/users") });
}

export function useCreateUser() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (body: UserCreate) => api<UserAccount>("/api/v1/users", { method: "POST", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: USERS }),
  });
}

export function useUpdateUser() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ id, ...body }: UserUpdate & { id: number }) =>
      api<UserAccount>(`/api/v1/users/${id}`, { method: "PATCH", body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: USERS }),
  });
}

export function useDeleteUser() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => api<void>(`/api/v1/users/${id}`, { method: "DELETE" }),
    onSuccess: () => qc.invalidateQueries({ queryKey: USERS }),
  });
}
