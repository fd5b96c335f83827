import type { ReactNode } from "react";
import { Navigate, useLocation } from "react-router-dom";

import { Loading } from "../components/Loading";
import type { Role } from "../api/types";
import { atLeast } from "./roles";
import { useAuth } from "./useAuth";
import { ErrorAlert } from "../components/ErrorAlert";

/** Routes behind a login; with `role`, also behind that role (the API refuses anyway; this gives a clear page). */
export function RequireAuth({ children, role }: { children: ReactNode; role?: Role }) {
  const { status, user } = useAuth();
  const location = useLocation();
  if (status === "restoring") return <Loading label="Restoring your session" />;
  if (status === "anonymous" || !user) {
    return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  }
  if (role && !atLeast(user.role, role)) {
    return <ErrorAlert error={`This page needs the ${role} role or higher (you are ${user.role}).`} />;
  }
  return <>{children}</>;
}
