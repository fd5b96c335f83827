import Link from "@mui/material/Link";
import { Link as RouterLink } from "react-router-dom";
import { useState } from "react";

import { useDevices, type Device } from "../../api/devices";
import { DataTable, type Column } from "../../components/DataTable";
import { PageHeader } from "../../components/PageHeader";
import { OnlineChip, StatusChip } from "../../components/StatusChip";

const columns: Column<Device>[] = [
  { key: "name", header: "Name", render: (d) => <Link component={RouterLink} to={`/devices/${d.uuid}`}>{d.name}</Link> },
  { key: "online", header: "Online", render: (d) => <OnlineChip online={d.online} /> },
  { key: "status", header: "Status", render: (d) => <StatusChip status={d.status} /> },
  { key: "fleet", header: "Fleet", render: (d) => d.fleet?.name ?? "—", hideBelow: "sm" },
];

export default function DevicesPage() {
  const [page, setPage] = useState(0);
  const [pageSize, setPageSize] = useState(50);
  const q = useDevices({}, pageSize, page * pageSize);
  return (
    <>
      <PageHeader title="Devices" />
      <DataTable label="Devices" columns={columns} rows={q.data?.items} rowKey={(d) => d.uuid}
        loading={q.isPending} fetching={q.isFetching} error={q.error} onRetry={() => void q.refetch()}
        paging={{ page, pageSize, total: q.data?.total ?? 0, onPageChange: setPage,
          onPageSizeChange: (s) => { setPageSize(s); setPage(0); } }} />
    </>
  );
}
