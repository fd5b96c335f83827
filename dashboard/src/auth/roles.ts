import type { Role } from "../api/types";

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2, owner: 3 };

/** Every action the UI offers and the least role the API accepts for it (src/iotistic/cloud/deps.py and the
 *  routers' Viewer/Operator/Admin/Owner dependencies). Buttons for actions a role lacks are not rendered. */
export const ACTIONS = {
  "devices.create": "admin",
  "devices.delete": "admin",
  "devices.update": "operator",
  "devices.tags": "operator",
  "devices.control": "operator",
  "devices.deploy": "operator",
  "devices.vpnConfig": "admin",
  "fleets.manage": "admin",
  "releases.create": "operator",
  "releases.deploy": "operator",
  "provisioningKeys.view": "admin",
  "provisioningKeys.manage": "admin",
  "mqtt.manage": "admin",
  "users.view": "admin",
  "users.manage": "admin",
  "audit.view": "admin",
  "license.install": "owner",
  "twin.edit": "operator",
  "twin.import": "admin",
} as const satisfies Record<string, Role>;

export type Action = keyof typeof ACTIONS;

export function atLeast(role: Role | null | undefined, min: Role): boolean {
  return role != null && RANK[role] >= RANK[min];
}

export function can(role: Role | null | undefined, action: Action): boolean {
  return atLeast(role, ACTIONS[action]);
}
