import ContentCopyIcon from "@mui/icons-material/ContentCopy";
import RocketLaunchIcon from "@mui/icons-material/RocketLaunch";
import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Link from "@mui/material/Link";
import MenuItem from "@mui/material/MenuItem";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";
import { Link as RouterLink, useParams, useSearchParams } from "react-router-dom";

import { useFleets, useRelease, type Release, type Selection, type TargetService } from "../../api/fleets";
import { Can } from "../../auth/Can";
import { DataTable, type Column } from "../../components/DataTable";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { StatusChip } from "../../components/StatusChip";
import { DeployDialog } from "./DeployDialog";
import { RolloutView } from "./RolloutView";

interface ServiceRow extends TargetService {
  appName: string;
  appId: number;
}

const serviceColumns: Column<ServiceRow>[] = [
  { key: "app", header: "App", render: (s) => s.appName },
  { key: "service", header: "Service", render: (s) => s.serviceName },
  { key: "image", header: "Image", render: (s) => <code>{s.config.image}</code> },
  { key: "state", header: "State", render: (s) => <StatusChip status={s.state ?? "running"} /> },
  { key: "ports", header: "Ports", hideBelow: "md", render: (s) => (s.config.ports ?? []).join(", ") || "—" },
  { key: "env", header: "Environment", hideBelow: "lg",
    render: (s) => Object.keys(s.config.environment ?? {}).join(", ") || "—" },
  { key: "volumes", header: "Volumes", hideBelow: "lg", render: (s) => (s.config.volumes ?? []).join(", ") || "—" },
];

function toParams(selection: Selection): URLSearchParams {
  const params = new URLSearchParams();
  if (selection.fleet) params.set("fleet", selection.fleet);
  if (selection.tag) params.set("tag", selection.tag);
  return params;
}

/** Which devices the rollout view watches: a fleet and/or a tag, or (neither) those running this release. */
function SelectionForm({ selection, fleets, onChange }: { selection: Selection; fleets: string[];
  onChange: (s: Selection) => void }) {
  const [fleet, setFleet] = useState(selection.fleet ?? "");
  const [tag, setTag] = useState(selection.tag ?? "");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onChange({ fleet: fleet || undefined, tag: tag.trim() || undefined });
  };
  return (
    <Box component="form" onSubmit={submit} noValidate aria-label="Devices to watch"
      sx={{ display: "flex", gap: 1, flexWrap: "wrap", alignItems: "center", mb: 2 }}>
      <TextField select size="small" label="Watch fleet" sx={{ minWidth: 180 }}
        value={fleets.includes(fleet) ? fleet : ""} onChange={(e) => setFleet(e.target.value)}>
        <MenuItem value="">Any fleet</MenuItem>
        {fleets.map((f) => <MenuItem key={f} value={f}>{f}</MenuItem>)}
      </TextField>
      <TextField size="small" label="Watch tag" placeholder="key or key:value" value={tag}
        onChange={(e) => setTag(e.target.value)} />
      <Button type="submit">Show</Button>
    </Box>
  );
}

function services(release: Release): ServiceRow[] {
  return Object.values(release.document.apps ?? {}).flatMap((app) =>
    app.services.map((s) => ({ ...s, appName: app.appName, appId: app.appId })));
}

/** One release: what it runs, deploying it, and the devices converging on it. The URL holds the rollout's
 *  selection (`?fleet=&tag=`), so a deploy leads straight to watching it and the view can be shared. */
export default function ReleasePage() {
  const id = Number(useParams().id);
  const release = useRelease(Number.isInteger(id) && id > 0 ? id : undefined);
  const fleets = useFleets();
  const [params, setParams] = useSearchParams();
  const [deploying, setDeploying] = useState(false);
  const [deployed, setDeployed] = useState<string | null>(null);

  if (!Number.isInteger(id) || id < 1) return <ErrorAlert error="This is not a release address." />;
  if (release.isPending) return <Loading label="Loading the release" />;
  if (release.error) return <ErrorAlert error={release.error} onRetry={() => void release.refetch()} />;
  const r = release.data;
  const fleetName = fleets.data?.find((f) => f.id === r.fleetId)?.name;
  const selection: Selection = {};
  if (params.get("fleet")) selection.fleet = params.get("fleet") ?? undefined;
  if (params.get("tag")) selection.tag = params.get("tag") ?? undefined;

  return (
    <>
      <PageHeader
        title={r.name}
        subtitle={<>Release {r.id}{fleetName && <> for fleet <Link component={RouterLink}
          to={`/fleets/${r.fleetId}`}>{fleetName}</Link></>}, made by {r.createdBy} on{" "}
          {new Date(r.createdAt).toLocaleString()}</>}
        actions={<>
          <Can action="releases.create">
            <Button component={RouterLink} to={`/fleets/releases/new?from=${r.id}`} startIcon={<ContentCopyIcon />}>
              Edit as new release
            </Button>
          </Can>
          <Can action="releases.deploy">
            <Button variant="contained" startIcon={<RocketLaunchIcon />} onClick={() => setDeploying(true)}>
              Deploy
            </Button>
          </Can>
        </>}
      />
      {deployed && <Alert severity="success" sx={{ mb: 2 }} onClose={() => setDeployed(null)}>{deployed}</Alert>}
      {r.notes && (
        <Card variant="outlined" sx={{ mb: 2 }}>
          <CardContent><Typography sx={{ whiteSpace: "pre-wrap" }}>{r.notes}</Typography></CardContent>
        </Card>
      )}
      <Box sx={{ mb: 3 }}>
        <DataTable label="Services" columns={serviceColumns} rows={services(r)}
          rowKey={(s) => `${s.appId}/${s.serviceId}`} />
      </Box>
      {/* A new selection starts the view afresh (first page, every state). */}
      <RolloutView key={`${selection.fleet ?? ""}|${selection.tag ?? ""}`} releaseId={r.id} selection={selection}
        controls={
        <SelectionForm key={`${selection.fleet ?? ""}|${selection.tag ?? ""}`} selection={selection}
          fleets={fleets.data?.map((f) => f.name) ?? []}
          onChange={(sel) => setParams(toParams(sel), { replace: true })} />
      } />
      {deploying && (
        <DeployDialog release={r} open defaultFleet={selection.fleet ?? fleetName}
          onClose={() => setDeploying(false)}
          onDeployed={(sel, count) => {
            setDeploying(false);
            setDeployed(`Deployed to ${count} device${count === 1 ? "" : "s"}. They pick it up on their next poll.`);
            setParams(toParams(sel), { replace: true });
          }} />
      )}
    </>
  );
}
