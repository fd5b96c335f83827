import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Collapse from "@mui/material/Collapse";
import Grid from "@mui/material/Grid";
import Stack from "@mui/material/Stack";
import Table from "@mui/material/Table";
import TableBody from "@mui/material/TableBody";
import TableCell from "@mui/material/TableCell";
import TableContainer from "@mui/material/TableContainer";
import TableHead from "@mui/material/TableHead";
import TableRow from "@mui/material/TableRow";
import Tooltip from "@mui/material/Tooltip";
import Typography from "@mui/material/Typography";
import { useState } from "react";

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
          <TableContainer>
            <Table size="small" aria-label="Services">
              <TableHead>
                <TableRow>
                  <TableCell>Service</TableCell>
                  <TableCell sx={{ display: { xs: "none", md: "table-cell" } }}>Image</TableCell>
                  <TableCell>Target</TableCell>
                  <TableCell>Reported</TableCell>
                  <TableCell align="right">Controls</TableCell>
                </TableRow>
              </TableHead>
              <TableBody>
                {rows.map((r) => (
                  <TableRow key={r.key} data-testid={`service-${r.serviceName}`}>
                    <TableCell>
                      <Typography variant="body2" fontWeight={500}>{r.serviceName}</Typography>
                      <Typography variant="caption" color="text.secondary">{r.appName}</Typography>
                    </TableCell>
                    <TableCell sx={{ display: { xs: "none", md: "table-cell" }, overflowWrap: "anywhere" }}>
                      <code>{r.image}</code>
                      {r.reportedImage && r.reportedImage !== r.image && (
                        <Typography variant="caption" display="block" color="warning.main">
                          running {r.reportedImage}
                        </Typography>
                      )}
                    </TableCell>
                    <TableCell>{r.target ? <StatusChip status={r.target} /> : <em>not in target</em>}</TableCell>
                    <TableCell>
                      {r.reported ? (
                        <Tooltip title={r.error ?? ""} disableHoverListener={!r.error}>
                          <span><StatusChip status={r.reported} /></span>
                        </Tooltip>
                      ) : "—"}
                      {r.restartCount ? (
                        <Typography variant="caption" display="block">{r.restartCount} restarts</Typography>
                      ) : null}
                      {r.error && <Typography variant="caption" display="block" color="error">{r.error}</Typography>}
                    </TableCell>
                    <TableCell align="right">
                      <Can action="devices.control">
                        <Stack direction="row" spacing={0.5} justifyContent="flex-end" flexWrap="wrap" useFlexGap>
                          {actionsFor(r.target).map((a) => (
                            <Button key={a} size="small" variant="outlined" disabled={control.isPending}
                              color={a === "stop" ? "error" : "primary"}
                              aria-label={`${ACTION_LABEL[a]} ${r.serviceName}`}
                              onClick={() => ask({ row: r, action: a })}>
                              {ACTION_LABEL[a]}
                            </Button>
                          ))}
                        </Stack>
                      </Can>
                    </TableCell>
                  </TableRow>
                ))}
              </TableBody>
            </Table>
          </TableContainer>
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
