import CheckIcon from "@mui/icons-material/CheckCircle";
import CloseIcon from "@mui/icons-material/Cancel";
import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Grid from "@mui/material/Grid";
import LinearProgress from "@mui/material/LinearProgress";
import List from "@mui/material/List";
import ListItem from "@mui/material/ListItem";
import ListItemIcon from "@mui/material/ListItemIcon";
import ListItemText from "@mui/material/ListItemText";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent, type ReactNode } from "react";

import { useInstallLicence, useLicence, type Licence } from "../../api/licence";
import { Can } from "../../auth/Can";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { StatusChip } from "../../components/StatusChip";

const FEATURE_LABELS: Record<string, string> = {
  maxDevices: "Devices",
  retentionDays: "Telemetry retention (days)",
  digitalTwin: "Digital twin",
  vpn: "Device VPN",
  hasDedicatedPrometheus: "Dedicated Prometheus",
  dedicatedGrafana: "Dedicated Grafana",
};

const DAY = 86_400_000;

function label(key: string): string {
  return FEATURE_LABELS[key] ?? key;
}

function date(ms: number): string {
  return new Date(ms).toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" });
}

/** Days from now until `ms`, rounded up: "ends in 1 day" until the last moment. */
function daysUntil(ms: number, now: number): number {
  return Math.max(0, Math.ceil((ms - now) / DAY));
}

function Fact({ name, children }: { name: string; children: ReactNode }) {
  return (
    <Box sx={{ mb: 1.5 }}>
      <Typography variant="body2" color="text.secondary" component="dt">{name}</Typography>
      <Typography component="dd" sx={{ m: 0 }}>{children}</Typography>
    </Box>
  );
}

function DeviceUsage({ licence }: { licence: Licence }) {
  const used = licence.usage.devices ?? 0;
  const max = licence.usage.maxDevices ?? null;
  if (max === null) return <Typography>{used} devices (no limit)</Typography>;
  const share = max > 0 ? Math.min(100, (100 * used) / max) : 100;
  return (
    <>
      <Typography>{used} of {max} devices</Typography>
      <LinearProgress variant="determinate" value={share} aria-label={`Devices used: ${used} of ${max}`}
        color={share >= 100 ? "error" : share >= 80 ? "warning" : "primary"} sx={{ my: 1, height: 8, borderRadius: 1 }} />
      {used >= max && (
        <Alert severity="warning">The device limit is reached: new devices are refused until the plan grows or
          devices are removed.</Alert>
      )}
    </>
  );
}

/** What this instance may do: the plan, its features and limits, current usage against them, and the trial or
 *  subscription behind it. Owners install a new licence here (billing sends one after a plan change). */
export default function LicencePage() {
  const licence = useLicence();
  if (licence.isPending) return <Loading label="Loading the licence" />;
  if (licence.error) return <ErrorAlert error={licence.error} onRetry={() => void licence.refetch()} />;
  const l = licence.data;
  const now = Date.now();
  const trialEnds = l.trial.isTrial && typeof l.trial.expiresAt === "number" ? l.trial.expiresAt * 1000 : null;
  const features = Object.entries(l.features).filter(([k]) => k !== "maxDevices" && k !== "retentionDays");

  return (
    <>
      <PageHeader title="Licence & plan" subtitle={<>Plan <strong>{l.plan}</strong>{" "}
        <StatusChip status={l.mode === "licensed" ? "valid" : "expired"} label={l.mode} /></>} />
      {l.mode !== "licensed" && (
        <Alert severity="warning" sx={{ mb: 2 }}>
          Running in free mode{l.reason ? `: ${l.reason}` : ""}. Install a licence to use your plan.
        </Alert>
      )}
      {trialEnds !== null && (
        <Alert severity="info" sx={{ mb: 2 }}>
          Trial: ends on {date(trialEnds)} ({daysUntil(trialEnds, now)} days left).
        </Alert>
      )}
      <Grid container spacing={2}>
        <Grid size={{ xs: 12, md: 6 }}>
          <Card variant="outlined" sx={{ height: "100%" }}>
            <CardContent>
              <Typography variant="h6" component="h2" gutterBottom>Usage</Typography>
              <DeviceUsage licence={l} />
              <Box component="dl" sx={{ mt: 2 }}>
                <Fact name="Telemetry retention">
                  {String(l.limits.retentionDays ?? l.features.retentionDays ?? "—")} days
                </Fact>
              </Box>
            </CardContent>
          </Card>
        </Grid>
        <Grid size={{ xs: 12, md: 6 }}>
          <Card variant="outlined" sx={{ height: "100%" }}>
            <CardContent>
              <Typography variant="h6" component="h2" gutterBottom>Licence</Typography>
              <Box component="dl" sx={{ m: 0 }}>
                <Fact name="Customer">{l.customerId ?? "—"}</Fact>
                <Fact name="Subscription">
                  {l.subscription.status ? <StatusChip status={l.subscription.status === "active" ? "active"
                    : l.subscription.status} label={l.subscription.status} /> : "—"}
                </Fact>
                <Fact name="Valid until">
                  {l.expiresAt ? `${date(Date.parse(l.expiresAt))} (${daysUntil(Date.parse(l.expiresAt), now)} days)` : "—"}
                </Fact>
              </Box>
            </CardContent>
          </Card>
        </Grid>
        <Grid size={{ xs: 12 }}>
          <Card variant="outlined">
            <CardContent>
              <Typography variant="h6" component="h2">Features</Typography>
              <List dense aria-label="Features">
                {features.map(([key, value]) => (
                  <ListItem key={key} disableGutters>
                    {typeof value === "boolean" ? (
                      <>
                        <ListItemIcon sx={{ minWidth: 32 }}>
                          {value ? <CheckIcon color="success" aria-hidden /> : <CloseIcon color="disabled" aria-hidden />}
                        </ListItemIcon>
                        <ListItemText primary={label(key)} secondary={value ? "included" : "not included"} />
                      </>
                    ) : (
                      <ListItemText sx={{ pl: 4 }} primary={label(key)}
                        secondary={value === null ? "unlimited" : String(value)} />
                    )}
                  </ListItem>
                ))}
              </List>
            </CardContent>
          </Card>
        </Grid>
      </Grid>
      <Can action="license.install"><InstallForm /></Can>
    </>
  );
}

function InstallForm() {
  const install = useInstallLicence();
  const [token, setToken] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    install.mutate(token.trim(), { onSuccess: () => setToken("") });
  };
  return (
    <Card variant="outlined" sx={{ mt: 2 }} component="section" aria-labelledby="install-heading">
      <CardContent>
        <Typography variant="h6" component="h2" id="install-heading" gutterBottom>Install a licence</Typography>
        <Box component="form" onSubmit={submit} noValidate>
          <TextField label="Licence token" fullWidth multiline minRows={3} value={token}
            onChange={(e) => setToken(e.target.value)} helperText="The signed licence billing sent you (a JWT)"
            slotProps={{ htmlInput: { spellCheck: false, style: { fontFamily: "monospace" } } }} />
          {install.error != null && <ErrorAlert error={install.error} />}
          {install.isSuccess && (
            <Alert severity="success" sx={{ mt: 2 }} role="status">
              Licence installed: plan {install.data.plan}. It applies now, without a restart.
            </Alert>
          )}
          <Button type="submit" variant="contained" sx={{ mt: 2 }} disabled={install.isPending || !token.trim()}>
            {install.isPending ? "Installing…" : "Install licence"}
          </Button>
        </Box>
      </CardContent>
    </Card>
  );
}
