import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Chip from "@mui/material/Chip";
import Link from "@mui/material/Link";
import List from "@mui/material/List";
import ListItem from "@mui/material/ListItem";
import Typography from "@mui/material/Typography";
import { Link as RouterLink } from "react-router-dom";

import { useNodeTelemetry, useUnmapDevice, type Reading, type TwinNode } from "../../api/twin";
import { Can } from "../../auth/Can";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";

function formatReading(r: Reading): string {
  const value = Number.isInteger(r.value) ? String(r.value) : r.value.toFixed(2).replace(/\.?0+$/, "");
  return `${r.metric}: ${value}${r.unit ? ` ${r.unit}` : ""}`;
}

function UnmapButton({ uuid, name }: { uuid: string; name: string }) {
  const unmap = useUnmapDevice();
  return (
    <Can action="twin.edit">
      <Box sx={{ display: "flex", flexDirection: "column", alignItems: "flex-end" }}>
        <Button size="small" onClick={() => unmap.mutate(uuid)} disabled={unmap.isPending}
          aria-label={`Remove ${name} from its place`}>
          Unmap
        </Button>
        {unmap.isError && <ErrorAlert error={unmap.error} />}
      </Box>
    </Can>
  );
}

/** The selected node: what it is, and the devices inside it with their latest readings. */
export function NodePanel({ node }: { node: TwinNode }) {
  const telemetry = useNodeTelemetry(node.id);
  return (
    <Box component="section" aria-labelledby="twin-node-title">
      <Typography variant="h6" component="h2" id="twin-node-title" sx={{ overflowWrap: "anywhere" }}>
        {node.name} <Chip size="small" label={node.kind} sx={{ ml: 1 }} />
      </Typography>
      <Typography variant="body2" color="text.secondary" sx={{ overflowWrap: "anywhere" }}>
        {[node.ifcClass, node.globalId && `GlobalId ${node.globalId}`, node.source && `from ${node.source}`]
          .filter(Boolean).join(" · ")}
      </Typography>
      {node.kind === "Device" && node.device && (
        <Box sx={{ display: "flex", alignItems: "center", gap: 1, mt: 1 }}>
          <Link component={RouterLink} to={`/devices/${node.device}`}>Open the device page</Link>
          <UnmapButton uuid={node.device} name={node.name} />
        </Box>
      )}
      {node.kind !== "Device" && (
        telemetry.isPending ? <Loading label="Loading devices and readings" />
          : telemetry.isError ? <ErrorAlert error={telemetry.error} onRetry={() => void telemetry.refetch()} />
          : telemetry.data.devices.length === 0 ? (
            <EmptyState title="No devices here">No device is mapped to this place or anything inside it.</EmptyState>
          ) : (
            <List aria-label={`Devices in ${node.name}`} data-testid="node-devices">
              {telemetry.data.devices.map((d) => (
                <ListItem key={d.uuid} divider disableGutters
                  secondaryAction={<UnmapButton uuid={d.uuid} name={d.name} />}
                  sx={{ flexWrap: "wrap", pr: 12 }}>
                  <Box sx={{ minWidth: 0 }}>
                    <Link component={RouterLink} to={`/devices/${d.uuid}`}>{d.name}</Link>
                    <Box sx={{ display: "flex", flexWrap: "wrap", gap: 0.5, mt: 0.5 }}>
                      {d.readings.length === 0 ? (
                        <Typography variant="body2" color="text.secondary">No readings yet</Typography>
                      ) : d.readings.map((r) => (
                        <Chip key={r.metric} size="small" variant="outlined" label={formatReading(r)}
                          title={`at ${new Date(r.ts).toLocaleString()}`} />
                      ))}
                    </Box>
                  </Box>
                </ListItem>
              ))}
            </List>
          )
      )}
    </Box>
  );
}
