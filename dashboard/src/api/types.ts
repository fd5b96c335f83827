// Shapes of the cloud API's JSON (see /openapi.json). Only what the dashboard reads is declared.

export type Role = "viewer" | "operator" | "admin" | "owner";

export interface User {
  id: number;
  email: string;
  role: Role;
  is_active: boolean;
  created_at: string;
  last_login_at: string | null;
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
