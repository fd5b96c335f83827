import { useMutation, useQuery } from "@tanstack/react-query";

import { api, tokens, type TokenPair } from "./client";
import type { User } from "./types";

export function login(email: string, password: string): Promise<TokenPair> {
  return api<TokenPair>("/api/v1/auth/login", { method: "POST", body: { email, password }, anonymous: true });
}

export async function logout(): Promise<void> {
  try {
    if (tokens.accessToken) await api<void>("/api/v1/auth/logout", { method: "POST" });
  } finally {
    // Forget the tokens even when the server cannot be reached: this browser must not stay logged in.
    tokens.clear();
  }
}

export function fetchMe(): Promise<User> {
  return api<User>("/api/v1/auth/me");
}

/** First run: whether the instance still needs its owner. */
export interface SetupStatus {
  needed: boolean;
}

export function fetchSetupStatus(): Promise<SetupStatus> {
  return api<SetupStatus>("/api/v1/setup", { anonymous: true });
}

export interface SetupRequest {
  token: string;
  email: string;
  password: string;
}

/** Creates the owner and returns their first session's tokens. */
export function createOwner(body: SetupRequest): Promise<TokenPair> {
  return api<TokenPair>("/api/v1/setup", { method: "POST", body, anonymous: true });
}

export function useSetupStatus() {
  return useQuery({ queryKey: ["setup"], queryFn: fetchSetupStatus, staleTime: 60_000, retry: false });
}

export function useCreateOwner() {
  return useMutation({ mutationFn: createOwner });
}
