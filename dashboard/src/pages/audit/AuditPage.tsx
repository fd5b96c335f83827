import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";

import { useAuditEvents, type AuditEvent, type AuditFilter } from "../../api/audit";
import { usePermissions } from "../../auth/useAuth";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { PageHeader } from "../../components/PageHeader";

const PAGE_SIZES = [25, 50, 100];

function details(d: Record<string, unknown>): string {
  return Object.entries(d).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
}

// Actors and targets are often long ids (device uuids, key ids): they wrap anywhere rather than widen the table.
const wrap = { overflowWrap: "anywhere" } as const;

const columns: Column<AuditEvent>[] = [
  { key: "at", header: "When", width: 110,
    render: (e) => <time dateTime={e.at}>{new Date(e.at).toLocaleString()}</time> },
  { key: "actor", header: "Who", render: (e) => <Box sx={wrap}>{e.actor}</Box> },
  { key: "action", header: "Action", render: (e) => <code>{e.action}</code> },
  { key: "target", header: "Target and details", hideBelow: "sm", render: (e) => (
    <Box sx={wrap}>
      {e.targetType ? `${e.targetType} ${e.targetId ?? ""}` : "—"}
      {Object.keys(e.details).length > 0 && (
        <Typography variant="body2" color="text.secondary" sx={wrap}>{details(e.details)}</Typography>
      )}
    </Box>
  ) },
  { key: "ip", header: "Address", hideBelow: "lg", render: (e) => e.ip ?? "—" },
];

/** `datetime-local` values are the user's local time; the API wants an instant. */
function instant(local: string): string | undefined {
  if (!local) return undefined;
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? local : t.toISOString();
}

/** Who did what and when: keys, users, deploys, deletions, the licence. Newest first. */
export default function AuditPage() {
  const { can } = usePermissions();
  if (!can("audit.view")) return <ErrorAlert error="The audit log is for admins." />;
  return <AuditView />;
}

function AuditView() {
  const [draft, setDraft] = useState({ action: "", actor: "", since: "", until: "" });
  const [filter, setFilter] = useState<AuditFilter>({});
  const [page, setPage] = useState(0);
  const [pageSize, setPageSize] = useState(PAGE_SIZES[0] ?? 25);
  const events = useAuditEvents(filter, page, pageSize);
  const rows = events.data?.items;
  const filtered = Object.values(filter).some(Boolean);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    setFilter({ action: draft.action.trim() || undefined, actor: draft.actor.trim() || undefined,
      since: instant(draft.since), until: instant(draft.until) });
    setPage(0);
  };
  const clear = () => {
    setDraft({ action: "", actor: "", since: "", until: "" });
    setFilter({});
    setPage(0);
  };

  return (
    <>
      <PageHeader title="Audit log" subtitle="Security-relevant actions, newest first." />
      <Box component="form" onSubmit={apply} noValidate aria-label="Filter the audit log"
        sx={{ display: "flex", gap: 2, flexWrap: "wrap", alignItems: "flex-start", mb: 2 }}>
        <TextField label="Action" size="small" value={draft.action} placeholder="user.created"
          onChange={(e) => setDraft({ ...draft, action: e.target.value })} />
        <TextField label="Who" size="small" value={draft.actor} placeholder="admin@example.com"
          onChange={(e) => setDraft({ ...draft, actor: e.target.value })} />
        <TextField label="From" size="small" type="datetime-local" value={draft.since}
          onChange={(e) => setDraft({ ...draft, since: e.target.value })} slotProps={{ inputLabel: { shrink: true } }} />
        <TextField label="Until" size="small" type="datetime-local" value={draft.until}
          onChange={(e) => setDraft({ ...draft, until: e.target.value })} slotProps={{ inputLabel: { shrink: true } }} />
        <Button type="submit" variant="contained">Apply</Button>
        {filtered && <Button onClick={clear}>Clear filters</Button>}
      </Box>
      <DataTable
        label="Audit events"
        columns={columns}
        rows={rows}
        rowKey={(e) => e.id}
        loading={events.isPending}
        fetching={events.isFetching && !events.isPending}
        error={events.error}
        onRetry={() => void events.refetch()}
        empty={<EmptyState title={filtered ? "No events match these filters" : "No events yet"}>
          {filtered ? "Widen the time range or clear the filters." : undefined}
        </EmptyState>}
        paging={rows && (page > 0 || events.data?.hasMore) ? {
          page, pageSize, pageSizeOptions: PAGE_SIZES,
          // The API has no total: -1 is MUI's "more than", shown while a next page exists.
          total: events.data?.hasMore ? -1 : page * pageSize + rows.length,
          onPageChange: setPage, onPageSizeChange: (n) => { setPageSize(n); setPage(0); },
        } : undefined}
      />
    </>
  );
}
