import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Typography from "@mui/material/Typography";
import type { ReactNode } from "react";

import type { Device } from "../../api/devices";
import { Time } from "../../components/Time";

function Row({ label, children }: { label: string; children: ReactNode }) {
  return (
    <>
      <Typography component="dt" variant="body2" color="text.secondary">{label}</Typography>
      <Typography component="dd" variant="body2" sx={{ m: 0, overflowWrap: "anywhere" }}>{children}</Typography>
    </>
  );
}

export function IdentityCard({ device }: { device: Device }) {
  return (
    <Card variant="outlined">
      <CardContent>
        <Typography variant="h6" component="h2" gutterBottom>Identity</Typography>
        <Typography component="dl" sx={{ display: "grid", gridTemplateColumns: "max-content 1fr", columnGap: 2,
          rowGap: 0.75, m: 0 }}>
          <Row label="UUID"><code>{device.uuid}</code></Row>
          <Row label="Type">{device.deviceType}</Row>
          <Row label="Fleet">{device.fleet?.name ?? "none"}</Row>
          <Row label="Last seen"><Time iso={device.lastSeenAt} /></Row>
          <Row label="IP address">{device.ipAddress ?? "unknown"}</Row>
          <Row label="OS">{device.osVersion ?? "unknown"}</Row>
          <Row label="Agent">{device.agentVersion ?? "unknown"}</Row>
          <Row label="Registered"><Time iso={device.createdAt} /></Row>
        </Typography>
      </CardContent>
    </Card>
  );
}
