import Box from "@mui/material/Box";
import Chip from "@mui/material/Chip";
import Link from "@mui/material/Link";
import Typography from "@mui/material/Typography";
import { Link as RouterLink, useSearchParams } from "react-router-dom";

import { useDevices, type Device, type DeviceFilters } from "../../api/devices";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { PageHeader } from "../../components/PageHeader";
import { OnlineChip, StatusChip } from "../../components/StatusChip";
import { Time } from "../../components/Time";
import { DeviceFilterBar } from "./DeviceFilterBar";
import { hasFilters, PAGE_SIZES, parseListState, toParams } from "./filters";

function Tags({ tags }: { tags: Record<string, string> }) {
  const entries = Object.entries(tags);
  if (entries.length === 0) return <Typography variant="body2" color="text.secondary">—</Typography>;
  return (
    <Box sx={{ display: "flex", gap: 0.5, flexWrap: "wrap" }}>
      {entries.slice(0, 4).map(([k, v]) => <Chip key={k} size="small" variant="outlined" label={v ? `${k}:${v}` : k} />)}
      {entries.length > 4 && <Chip size="small" label={`+${entries.length - 4}`} />}
    </Box>
  );
}

const columns: Column<Device>[] = [
  { key: "name", header: "Name", render: (d) => (
    <Link component={RouterLink} to={`/devices/${encodeURIComponent(d.uuid)}`} sx={{ fontWeight: 500 }}>
      {d.name}
    </Link>
  ) },
  { key: "online", header: "Online", render: (d) => <OnlineChip online={d.online} /> },
  { key: "status", header: "Status", render: (d) => <StatusChip status={d.status} />, hideBelow: "sm" },
  { key: "fleet", header: "Fleet", render: (d) => d.fleet?.name ?? "—" },
  { key: "tags", header: "Tags", render: (d) => <Tags tags={d.tags} />, hideBelow: "md" },
  { key: "lastSeen", header: "Last seen", render: (d) => <Time iso={d.lastSeenAt} />, hideBelow: "sm" },
  { key: "type", header: "Type", render: (d) => d.deviceType, hideBelow: "lg" },
];

export default function DevicesPage() {
  const [params, setParams] = useSearchParams();
  const state = parseListState(params);
  const { filters, page, pageSize } = state;
  const q = useDevices(filters, pageSize, page * pageSize);
  const total = q.data?.total ?? 0;

  const update = (next: Partial<typeof state>) => setParams(toParams({ ...state, ...next }), { replace: true });
  const setFilters = (f: DeviceFilters) => update({ filters: f, page: 0 });

  return (
    <>
      <PageHeader title="Devices"
        subtitle={q.data ? `${total.toLocaleString()} device${total === 1 ? "" : "s"}${hasFilters(filters) ? " match" : ""}` : undefined} />
      <DeviceFilterBar filters={filters} onChange={setFilters} />
      <DataTable
        label="Devices"
        columns={columns}
        rows={q.data?.items}
        rowKey={(d) => d.uuid}
        loading={q.isPending}
        fetching={q.isFetching}
        error={q.error}
        onRetry={() => void q.refetch()}
        empty={hasFilters(filters)
          ? <EmptyState title="No devices match these filters">Change or clear the filters.</EmptyState>
          : <EmptyState title="No devices yet">
              Devices appear here once they register with a provisioning key.
            </EmptyState>}
        paging={{ page, pageSize, total, pageSizeOptions: PAGE_SIZES,
          onPageChange: (p) => update({ page: p }),
          onPageSizeChange: (s) => update({ pageSize: s, page: 0 }) }}
      />
    </>
  );
}
