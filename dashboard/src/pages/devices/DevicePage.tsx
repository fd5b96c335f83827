import DownloadIcon from "@mui/icons-material/Download";
import Breadcrumbs from "@mui/material/Breadcrumbs";
import Button from "@mui/material/Button";
import Grid from "@mui/material/Grid";
import Link from "@mui/material/Link";
import Stack from "@mui/material/Stack";
import Typography from "@mui/material/Typography";
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link as RouterLink, useParams } from "react-router-dom";

import { api } from "../../api/client";
import { downloadVpnConfig, useCurrentState, useDevice, useTarget, type Device } from "../../api/devices";
import { usePermissions } from "../../auth/useAuth";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { OnlineChip, StatusChip } from "../../components/StatusChip";
import { Time } from "../../components/Time";
import { IdentityCard } from "./IdentityCard";
import { LiveMetricsCard } from "./LiveMetricsCard";
import { LogsCard } from "./LogsCard";
import { serviceRows } from "./services";
import { ServicesCard } from "./ServicesCard";
import { TagsCard } from "./TagsCard";

/** The VPN download is offered when the plan includes VPN; a cloud without VPN_ENABLED answers with its reason. */
function VpnDownload({ device }: { device: Device }) {
  const { can } = usePermissions();
  const licence = useQuery({
    queryKey: ["license"],
    queryFn: ({ signal }) => api<{ features: Record<string, unknown> }>("/api/v1/license", { signal }),
    enabled: can("devices.vpnConfig"),
    staleTime: 60_000,
  });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  if (!can("devices.vpnConfig") || !licence.data?.features.vpn) return null;
  return (
    <Stack alignItems="flex-end">
      <Button variant="outlined" startIcon={<DownloadIcon />} disabled={busy} onClick={async () => {
        setBusy(true);
        setError(null);
        try {
          await downloadVpnConfig(device);
        } catch (err) {
          setError(err);
        } finally {
          setBusy(false);
        }
      }}>VPN configuration</Button>
      {error != null && <ErrorAlert error={error} />}
    </Stack>
  );
}

export default function DevicePage() {
  const { uuid = "" } = useParams();
  const device = useDevice(uuid);
  const target = useTarget(uuid);
  const current = useCurrentState(uuid);

  const crumbs = (
    <Breadcrumbs aria-label="Breadcrumb" sx={{ mb: 1 }}>
      <Link component={RouterLink} to="/devices">Devices</Link>
      <Typography color="text.primary">{device.data?.name ?? uuid}</Typography>
    </Breadcrumbs>
  );
  if (device.isPending) return <>{crumbs}<Loading label="Loading device" /></>;
  if (device.isError) return <>{crumbs}<ErrorAlert error={device.error} onRetry={() => void device.refetch()} /></>;
  const d = device.data;
  const services = [...new Set(serviceRows(target.data, current.data).map((r) => r.serviceName))];

  return (
    <>
      {crumbs}
      <PageHeader
        title={d.name}
        subtitle={
          <Stack direction="row" spacing={1} alignItems="center" flexWrap="wrap" useFlexGap sx={{ mt: 0.5 }}>
            <OnlineChip online={d.online} />
            <StatusChip status={d.status} />
            <Typography variant="body2" color="text.secondary">last seen <Time iso={d.lastSeenAt} /></Typography>
          </Stack>
        }
        actions={<VpnDownload device={d} />}
      />
      <Grid container spacing={2}>
        <Grid size={{ xs: 12, md: 6 }}><IdentityCard device={d} /></Grid>
        <Grid size={{ xs: 12, md: 6 }}><TagsCard uuid={d.uuid} tags={d.tags} /></Grid>
        <Grid size={12}><ServicesCard uuid={d.uuid} /></Grid>
        <Grid size={12}><LiveMetricsCard uuid={d.uuid} /></Grid>
        <Grid size={12}><LogsCard uuid={d.uuid} services={services} /></Grid>
      </Grid>
    </>
  );
}
