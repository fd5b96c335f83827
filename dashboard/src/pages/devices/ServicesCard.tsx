import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Collapse from "@mui/material/Collapse";
import Grid from "@mui/material/Grid";
import Paper from "@mui/material/Paper";
import Stack from "@mui/material/Stack";
import Typography from "@mui/material/Typography";
import { useId, useState } from "react";

import { errorMessage } from "../../api/client";
import { useCurrentState, useDeployStaged, useServiceAction, useTarget, type ServiceAction } from "../../api/devices";
import { Can } from "../../auth/Can";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { StatusChip } from "../../components/StatusChip";
import { Time } from "../../components/Time";
import { ACTION_LABEL, actionsFor, convergence, serviceRows, type ServiceRow } from "./services";

interface Pending {
  row: ServiceRow;
  action: ServiceAction;
}

function Json({ title, value }: { title: string; value: unknown }) {
  return (
    <Box>
      <Typography variant="subtitle2" component="h3">{title}</Typography>
      <Box component="pre" tabIndex={0} aria-label={title} sx={{ m: 0, p: 1, bgcolor: "grey.100", borderRadius: 1,
        maxHeight: 320, overflow: "auto", fontSize: 12 }}>
        {JSON.stringify(value ?? null, null, 2)}
      </Box>
    </Box>
  );
}

/** One service: a labelled region (found by name with a screen reader or a test), its target and reported state
 *  side by side, and the controls that change something for it. */
function ServiceItem({ row: r, busy, onAction }: { row: ServiceRow; busy: boolean;
  onAction: (a: ServiceAction) => void }) {
  const titleId = useId();
  return (
    <Paper component="section" variant="outlined" aria-labelledby={titleId} sx={{ p: 1.5 }}>
      <Stack direction={{ xs: "column", sm: "row" }} spacing={1.5} alignItems={{ sm: "center" }}>
        <Box sx={{ flex: "1 1 auto", minWidth: 0 }}>
          <Typography id={titleId} variant="subtitle1" component="h3" fontWeight={500}>
            <span className="visually-hidden">Service </span>{r.serviceName}
          </Typography>
          <Typography variant="body2" color="text.secondary" sx={{ overflowWrap: "anywhere" }}>
            {r.appName} · <code>{r.image}</code>
            {r.reportedImage && r.reportedImage !== r.image && <> · running <code>{r.reportedImage}</code></>}
          </Typography>
        </Box>
        <Stack direction="row" spacing={2} alignItems="center" flexWrap="wrap" useFlexGap>
          <Box>
            <Typography variant="caption" color="text.secondary" display="block">Target</Typography>
            {r.target ? <StatusChip status={r.target} /> : <Typography variant="body2"><em>not in target</em></Typography>}
          </Box>
          <Box>
            <Typography variant="caption" color="text.secondary" display="block">Reported</Typography>
            {r.reported ? <StatusChip status={r.reported} /> : <Typography variant="body2">—</Typography>}
          </Box>
          {r.restartCount ? <Typography variant="caption">{r.restartCount} restarts</Typography> : null}
        </Stack>
        <Can action="devices.control">
          <Stack direction="row" spacing={0.5} flexWrap="wrap" useFlexGap>
            {actionsFor(r.target).map((a) => (
              <Button key={a} size="small" variant="outlined" disabled={busy} color={a === "stop" ? "error" : "primary"}
                aria-label={`${ACTION_LABEL[a]} ${r.serviceName}`} onClick={() => onAction(a)}>
                {ACTION_LABEL[a]}
              </Button>
            ))}
          </Stack>
        </Can>
      </Stack>
      {r.error && <Typography variant="body2" color="error" sx={{ mt: 1 }}>{r.error}</Typography>}
    </Paper>
  );
}

export function ServicesCard({ uuid }: { uuid: string }) {
  const target = useTarget(uuid);
  const current = useCurrentState(uuid);
  const control = useServiceAction(uuid);
  const deploy = useDeployStaged(uuid);
  const [confirm, setConfirm] = useState<Pending | null>(null);
  const [showDocs, setShowDocs] = useState(false);
  const [done, setDone] = useState<string | null>(null);

  const run = async ({ row, action }: Pending) => {
    setDone(null);
    try {
      const t = await control.mutateAsync({ appId: row.appId, service: row.serviceName, action });
      setDone(`${ACTION_LABEL[action]}: ${row.serviceName} — target version ${t.version} deployed.`);
      setConfirm(null);
    } catch {
      // control.error is shown (in the dialog when one is open)
    }
  };
  const ask = (p: Pending) => (p.action === "stop" || p.action === "restart" ? setConfirm(p) : void run(p));

  if (target.isPending) return <Card variant="outlined"><Loading label="Loading services" /></Card>;
  if (target.isError) {
    return <ErrorAlert title="Services" error={target.error} onRetry={() => void target.refetch()} />;
  }
  const rows = serviceRows(target.data, current.data);
  const state = convergence(target.data, current.data);
  const t = target.data;

  return (
    <Card variant="outlined">
      <CardContent>
        <Stack direction="row" alignItems="center" flexWrap="wrap" useFlexGap spacing={1} sx={{ mb: 1 }}>
          <Typography variant="h6" component="h2" sx={{ flexGrow: 1 }}>Apps and services</Typography>
          <StatusChip status={state === "converged" ? "ok" : state === "updating" ? "pending" : state}
            label={state === "unknown" ? "not reported" : state} />
        </Stack>
        <Typography variant="body2" color="text.secondary" sx={{ mb: 1 }}>
          Target version {t.version}
          {t.deployedAt && <> deployed <Time iso={t.deployedAt} /></>}
          {" · "}device reports{" "}
          {current.data?.state?.appliedVersion !== undefined
            ? <>version {current.data.state.appliedVersion} ({current.data.state.status ?? "no status"})</>
            : "nothing yet"}
          {current.data?.reportedAt && <>, <Time iso={current.data.reportedAt} /></>}
        </Typography>
        {current.isError && <ErrorAlert error={current.error} title="Reported state unavailable" />}

        {t.pending && (
          <Alert severity="info" sx={{ mb: 1 }} action={
            <Can action="devices.deploy">
              <Button color="inherit" size="small" disabled={deploy.isPending} onClick={() => deploy.mutate()}>
                {deploy.isPending ? "Deploying…" : "Deploy"}
              </Button>
            </Can>
          }>
            A staged target (changed <Time iso={t.stagedAt} />) is not deployed yet.
          </Alert>
        )}
        {deploy.isError && <ErrorAlert error={deploy.error} />}
        {control.isError && !confirm && <ErrorAlert error={control.error} />}
        {done && !control.isError && <Alert severity="success" sx={{ mb: 1 }} role="status">{done}</Alert>}

        {rows.length === 0 ? (
          <EmptyState title="No services">
            The deployed target runs nothing. Deploy a release to this device's fleet or tag.
          </EmptyState>
        ) : (
          <Stack spacing={1}>
            {rows.map((r) => <ServiceItem key={r.key} row={r} busy={control.isPending} onAction={(a) => ask({ row: r, action: a })} />)}
          </Stack>
        )}

        <Button size="small" sx={{ mt: 1 }} onClick={() => setShowDocs((v) => !v)} aria-expanded={showDocs}>
          {showDocs ? "Hide" : "Show"} target and reported state
        </Button>
        <Collapse in={showDocs} unmountOnExit>
          <Grid container spacing={2} sx={{ mt: 0.5 }}>
            <Grid size={{ xs: 12, md: 6 }}><Json title={`Deployed target (version ${t.version})`} value={t.deployed} /></Grid>
            <Grid size={{ xs: 12, md: 6 }}><Json title="Reported by the device" value={current.data?.state} /></Grid>
          </Grid>
        </Collapse>
      </CardContent>

      <ConfirmDialog
        open={confirm !== null}
        title={confirm ? `${ACTION_LABEL[confirm.action]} ${confirm.row.serviceName}?` : ""}
        confirmLabel={confirm ? ACTION_LABEL[confirm.action] : "Confirm"}
        destructive={confirm?.action === "stop"}
        busy={control.isPending}
        error={control.isError ? errorMessage(control.error) : undefined}
        onConfirm={() => confirm && void run(confirm)}
        onClose={() => { setConfirm(null); control.reset(); }}
      >
        {confirm?.action === "stop"
          ? "The service stops on the device and stays stopped until someone starts it."
          : "The device recreates the service's container with the same image and settings."}
      </ConfirmDialog>
    </Card>
  );
}
