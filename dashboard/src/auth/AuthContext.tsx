import { useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useEffect, useMemo, useState, type ReactNode } from "react";

import * as authApi from "../api/auth";
import { ApiError, refreshSession, tokens, type TokenPair } from "../api/client";
import type { User } from "../api/types";

export type AuthStatus = "restoring" | "anonymous" | "authenticated";

export interface AuthState {
  status: AuthStatus;
  user: User | null;
  /** Why the user was sent back to the login page (session ended), if that happened. */
  notice: string | null;
  login: (email: string, password: string) => Promise<void>;
  /** Start a session from tokens another route issued (the first-run setup logs the new owner in). */
  adopt: (pair: TokenPair) => Promise<void>;
  logout: () => Promise<void>;
}

export const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [user, setUser] = useState<User | null>(null);
  const [status, setStatus] = useState<AuthStatus>(tokens.refreshToken ? "restoring" : "anonymous");
  const [notice, setNotice] = useState<string | null>(null);

  // A reload keeps only the refresh token: trade it for a fresh access token and the user behind it.
  useEffect(() => {
    if (status !== "restoring") return;
    let cancelled = false;
    (async () => {
      const ok = await refreshSession();
      if (!ok) {
        tokens.clear();
        if (!cancelled) setStatus("anonymous");
        return;
      }
      try {
        const me = await authApi.fetchMe();
        if (!cancelled) {
          setUser(me);
          setStatus("authenticated");
        }
      } catch {
        tokens.clear();
        if (!cancelled) setStatus("anonymous");
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [status]);

  // The client gives up on a 401 that a refresh cannot fix: back to the login page with the reason.
  useEffect(
    () =>
      tokens.subscribe((event) => {
        if (event !== "expired") return;
        setUser(null);
        setStatus("anonymous");
        setNotice("Your session has ended. Please sign in again.");
        queryClient.clear();
      }),
    [queryClient],
  );

  const adopt = useCallback(async (pair: TokenPair) => {
    tokens.set(pair);
    try {
      const me = await authApi.fetchMe();
      setUser(me);
      setNotice(null);
      setStatus("authenticated");
    } catch (err) {
      tokens.clear();
      throw err instanceof ApiError ? err : new ApiError(0, "error", "Signed in, but loading your profile failed.");
    }
  }, []);

  const login = useCallback(async (email: string, password: string) => {
    await adopt(await authApi.login(email, password));
  }, [adopt]);

  const logout = useCallback(async () => {
    try {
      await authApi.logout();
    } catch {
      // tokens are cleared regardless; the server session ends on its own schedule
    }
    setUser(null);
    setNotice(null);
    setStatus("anonymous");
    queryClient.clear();
  }, [queryClient]);

  const value = useMemo<AuthState>(() => ({ status, user, notice, login, adopt, logout }),
    [status, user, notice, login, adopt, logout]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}
