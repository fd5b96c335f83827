import { useContext } from "react";

import type { Role } from "../api/types";
import { AuthContext, type AuthState } from "./AuthContext";
import { atLeast, can, type Action } from "./roles";

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error("useAuth must be used inside <AuthProvider>");
  return ctx;
}

/** The signed-in user's role checks, for hiding controls the user cannot use. */
export function usePermissions(): { role: Role | null; can: (action: Action) => boolean;
  atLeast: (min: Role) => boolean } {
  const { user } = useAuth();
  const role = user?.role ?? null;
  return { role, can: (action) => can(role, action), atLeast: (min) => atLeast(role, min) };
}
