import Link from "@mui/material/Link";
import { useState } from "react";
import { Link as RouterLink } from "react-router-dom";

import { useReleases, type Fleet, type Release } from "../../api/fleets";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";

const PAGE = 25;

function serviceCount(r: Release): number {
  return Object.values(r.document.apps ?? {}).reduce((n, a) => n + a.services.length, 0);
}

/** Releases, newest first. */
export function ReleaseList({ fleets, fleetId }: { fleets: Fleet[] | undefined; fleetId?: number }) {
  const [page, setPage] = useState(0);
  const releases = useReleases({ fleet: fleetId, limit: PAGE + 1, offset: page * PAGE });
  const rows = releases.data?.slice(0, PAGE);
  const hasMore = (releases.data?.length ?? 0) > PAGE;
  const fleetName = (id: number | null) => (id === null ? "—" : fleets?.find((f) => f.id === id)?.name ?? `#${id}`);

  const columns: Column<Release>[] = [
    { key: "name", header: "Release", render: (r) => (
      <Link component={RouterLink} to={`/fleets/releases/${r.id}`}>{r.name}</Link>) },
    ...(fleetId === undefined ? [{ key: "fleet", header: "Fleet", render: (r: Release) => fleetName(r.fleetId) }] : []),
    { key: "services", header: "Services", align: "right", render: (r) => serviceCount(r) },
    { key: "by", header: "Made by", hideBelow: "md", render: (r) => r.createdBy },
    { key: "at", header: "Made", hideBelow: "sm", render: (r) => new Date(r.createdAt).toLocaleString() },
  ];

  return (
    <DataTable
      label="Releases"
      columns={columns}
      rows={rows}
      rowKey={(r) => r.id}
      loading={releases.isPending}
      fetching={releases.isFetching && !releases.isPending}
      error={releases.error}
      onRetry={() => void releases.refetch()}
      empty={<EmptyState title="No releases yet">
        A release names the apps and services devices run; deploy it to a fleet or a tag.
      </EmptyState>}
      paging={page > 0 || hasMore ? {
        // -1 is MUI's "more than": the API has no total, one more row was asked for to know a next page exists.
        page, pageSize: PAGE, total: hasMore ? -1 : page * PAGE + (rows?.length ?? 0),
        onPageChange: setPage, pageSizeOptions: [PAGE],
      } : undefined}
    />
  );
}
