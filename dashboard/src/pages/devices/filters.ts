import { DEVICE_STATUSES, type DeviceFilters, type DeviceStatus } from "../../api/devices";

export const PAGE_SIZES = [25, 50, 100, 200];
const DEFAULT_SIZE = 50;

export interface ListState {
  filters: DeviceFilters;
  page: number;
  pageSize: number;
}

/** The list's state lives in the URL so a filtered page can be bookmarked, shared and survives reload. */
export function parseListState(params: URLSearchParams): ListState {
  const filters: DeviceFilters = {};
  const status = params.get("status");
  if (status && (DEVICE_STATUSES as string[]).includes(status)) filters.status = status as DeviceStatus;
  const online = params.get("online");
  if (online === "true" || online === "false") filters.online = online === "true";
  for (const key of ["fleet", "tag", "text"] as const) {
    const v = params.get(key)?.trim();
    if (v) filters[key] = v;
  }
  const size = Number(params.get("size"));
  const pageSize = PAGE_SIZES.includes(size) ? size : DEFAULT_SIZE;
  const page = Math.max(0, Math.floor(Number(params.get("page")) || 0));
  return { filters, page, pageSize };
}

export function toParams({ filters, page, pageSize }: ListState): URLSearchParams {
  const p = new URLSearchParams();
  if (filters.status) p.set("status", filters.status);
  if (filters.online !== undefined) p.set("online", String(filters.online));
  if (filters.fleet) p.set("fleet", filters.fleet);
  if (filters.tag) p.set("tag", filters.tag);
  if (filters.text) p.set("text", filters.text);
  if (page > 0) p.set("page", String(page));
  if (pageSize !== DEFAULT_SIZE) p.set("size", String(pageSize));
  return p;
}

export function hasFilters(f: DeviceFilters): boolean {
  return Object.values(f).some((v) => v !== undefined && v !== "");
}
