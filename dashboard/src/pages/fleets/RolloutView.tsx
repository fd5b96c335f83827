import Box from "@mui/material/Box";
import Chip from "@mui/material/Chip";
import LinearProgress from "@mui/material/LinearProgress";
import Link from "@mui/material/Link";
import Stack from "@mui/material/Stack";
import Typography from "@mui/material/Typography";
import { useState, type ReactNode } from "react";
import { Link as RouterLink } from "react-router-dom";

import { ROLLOUT_STATES, useRollout, type RolloutDevice, type RolloutState, type Selection } from "../../api/fleets";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { OnlineChip, StatusChip } from "../../components/StatusChip";

export const STATE_LABEL: Record<RolloutState, string> = {
  converged: "converged",
  updating: "updating",
  offline: "offline",
  failed: "failed",
  other_release: "other release",
};

const CHIP_STATUS: Record<RolloutState, string> = {
  converged: "succeeded", updating: "installing", offline: "offline", failed: "failed", other_release: "disabled",
};

function describe(selection: Selection): string {
  const parts = [selection.fleet && `fleet ${selection.fleet}`, selection.tag && `tag ${selection.tag}`]
    .filter(Boolean);
  return parts.length ? parts.join(" with ") : "devices running this release";
}

const columns: Column<RolloutDevice>[] = [
  { key: "name", header: "Device", render: (d) => (
    <Link component={RouterLink} to={`/devices/${encodeURIComponent(d.uuid)}`}>{d.name}</Link>) },
  { key: "state", header: "Rollout", render: (d) => <StatusChip status={CHIP_STATUS[d.state]} label={STATE_LABEL[d.state]} /> },
  { key: "target", header: "Target version", align: "right", render: (d) => `v${d.targetVersion}` },
  { key: "applied", header: "Running version", align: "right",
    render: (d) => (d.appliedVersion === null ? "—" : `v${d.appliedVersion}`) },
  { key: "status", header: "Reported", hideBelow: "md", render: (d) => d.status ?? "nothing yet" },
  { key: "online", header: "Connection", hideBelow: "sm", render: (d) => <OnlineChip online={d.online} /> },
  { key: "reportedAt", header: "Last report", hideBelow: "lg",
    render: (d) => (d.reportedAt ? new Date(d.reportedAt).toLocaleString() : "—") },
];

/** Devices converging on a release, refreshed every few seconds: how many run it, which are still updating, and the
 *  ones that need a look (failed, offline) first. */
export function RolloutView({ releaseId, selection, refreshMs, controls }: { releaseId: number;
  selection: Selection; refreshMs?: number; controls?: ReactNode }) {
  const [state, setState] = useState<RolloutState | undefined>();
  const [page, setPage] = useState(0);
  const [pageSize, setPageSize] = useState(25);
  const rollout = useRollout(releaseId, { ...selection, state, limit: pageSize, offset: page * pageSize },
    refreshMs);
  const summary = rollout.data?.summary;
  const selected = summary ? ROLLOUT_STATES.reduce((n, s) => n + summary[s], 0) : 0;
  const targeted = selected - (summary?.other_release ?? 0);
  const done = summary?.converged ?? 0;

  return (
    <Box component="section" aria-labelledby="rollout-heading">
      <Typography variant="h6" component="h2" id="rollout-heading">Rollout</Typography>
      <Typography color="text.secondary" gutterBottom>
        {describe(selection)}; refreshed every {Math.round((refreshMs ?? 3000) / 1000)} s
      </Typography>
      {controls}
      {summary && (
        <Box sx={{ mb: 2 }}>
          <Typography aria-live="polite" data-testid="rollout-progress">
            {targeted ? `${done} of ${targeted} device${targeted === 1 ? "" : "s"} converged`
              : "No device here has this release deployed"}
          </Typography>
          {summary.other_release > 0 && (
            <Typography variant="body2" color="text.secondary">
              {summary.other_release} device{summary.other_release === 1 ? " runs" : "s run"} another release
            </Typography>
          )}
          <LinearProgress variant="determinate" value={targeted ? (100 * done) / targeted : 0}
            aria-label="Devices converged" sx={{ my: 1, height: 8, borderRadius: 1 }} />
          <Stack direction="row" spacing={1} useFlexGap sx={{ flexWrap: "wrap" }} role="group"
            aria-label="Show devices by rollout state">
            <Chip label={`all ${selected}`} color={state === undefined ? "primary" : "default"}
              onClick={() => { setState(undefined); setPage(0); }} aria-pressed={state === undefined} />
            {ROLLOUT_STATES.map((s) => (
              <Chip key={s} label={`${STATE_LABEL[s]} ${summary[s]}`} color={state === s ? "primary" : "default"}
                onClick={() => { setState(s); setPage(0); }} aria-pressed={state === s} />
            ))}
          </Stack>
        </Box>
      )}
      <DataTable
        label="Rollout devices"
        columns={columns}
        rows={rollout.data?.items}
        rowKey={(d) => d.uuid}
        loading={rollout.isPending}
        fetching={rollout.isFetching && !rollout.isPending}
        error={rollout.error}
        onRetry={() => void rollout.refetch()}
        empty={<EmptyState title={state ? `No ${STATE_LABEL[state]} devices` : "No devices in this selection"}>
          {state ? "Pick another state above." : "Deploy the release to a fleet or a tag to start a rollout."}
        </EmptyState>}
        paging={rollout.data && rollout.data.total > 0 ? {
          page, pageSize, total: rollout.data.total, onPageChange: setPage,
          onPageSizeChange: (n) => { setPageSize(n); setPage(0); },
        } : undefined}
      />
    </Box>
  );
}
