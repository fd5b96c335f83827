// The audit log (routers/audit.py), newest first. The API returns a page without a total, so one extra row is
// asked for to know whether a next page exists.
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api } from "./client";

export interface AuditEvent {
  id: number;
  at: string;
  actor: string;
  action: string;
  targetType: string | null;
  targetId: string | null;
  details: Record<string, unknown>;
  ip: string | null;
}

export interface AuditFilter {
  action?: string;
  actor?: string;
  /** ISO 8601 times with a zone. */
  since?: string;
  until?: string;
}

export interface AuditPage {
  items: AuditEvent[];
  hasMore: boolean;
}

export function useAuditEvents(filter: AuditFilter, page: number, pageSize: number) {
  return useQuery({
    queryKey: ["audit", filter, page, pageSize],
    queryFn: async (): Promise<AuditPage> => {
      const rows = await api<AuditEvent[]>("/api/v1/audit",
        { query: { ...filter, limit: pageSize + 1, offset: page * pageSize } });
      return { items: rows.slice(0, pageSize), hasMore: rows.length > pageSize };
    },
    placeholderData: keepPreviousData,
  });
}
