// Shapes of the cloud API's JSON (see /openapi.json). Responses use camelCase field names (the API's `Wire`
// models), except the token pair, which keeps OAuth's snake_case.

export type Role = "viewer" | "operator" | "admin" | "owner";

export interface User {
  id: number;
  email: string;
  role: Role;
  isActive: boolean;
  createdAt: string;
  lastLoginAt: string | null;
}

export interface FleetRef {
  id: number;
  name: string;
}

export interface ApiErrorBody {
  error: string;
  message: string;
  details?: unknown;
}
