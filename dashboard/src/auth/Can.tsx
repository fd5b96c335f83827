import type { ReactNode } from "react";

import type { Action } from "./roles";
import { usePermissions } from "./useAuth";

/** Renders its children only when the signed-in user may perform `action`: viewers see no buttons they cannot use. */
export function Can({ action, children, fallback = null }: { action: Action; children: ReactNode;
  fallback?: ReactNode }) {
  return <>{usePermissions().can(action) ? children : fallback}</>;
}
