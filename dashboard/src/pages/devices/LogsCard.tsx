import Box from "@mui/material/Box";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import FormControlLabel from "@mui/material/FormControlLabel";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import Switch from "@mui/material/Switch";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useEffect, useRef, useState } from "react";

import { useDeviceLogs } from "../../api/devices";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";

/** The device's latest log lines, refreshed every few seconds while "Follow" is on; newest at the bottom. */
export function LogsCard({ uuid, services }: { uuid: string; services: string[] }) {
  const [service, setService] = useState("");
  const [follow, setFollow] = useState(true);
  const logs = useDeviceLogs(uuid, service || undefined, follow);
  const box = useRef<HTMLDivElement>(null);
  const lines = logs.data ?? [];
  const last = lines.at(-1);

  // Keep the view pinned to the newest line while following, unless the reader scrolled up to read.
  const pinned = useRef(true);
  useEffect(() => {
    const el = box.current;
    if (el && follow && pinned.current) el.scrollTop = el.scrollHeight;
  }, [last?.timestamp, last?.message, follow]);

  return (
    <Card variant="outlined">
      <CardContent>
        <Stack direction="row" alignItems="center" spacing={2} flexWrap="wrap" useFlexGap sx={{ mb: 1 }}>
          <Typography variant="h6" component="h2" sx={{ flexGrow: 1 }}>Logs</Typography>
          <TextField select size="small" label="Service" value={service} onChange={(e) => setService(e.target.value)}
            slotProps={{ inputLabel: { shrink: true }, select: { displayEmpty: true } }}
            sx={{ minWidth: 160 }}>
            <MenuItem value="">All services</MenuItem>
            {services.map((s) => <MenuItem key={s} value={s}>{s}</MenuItem>)}
          </TextField>
          <FormControlLabel control={<Switch checked={follow} onChange={(e) => setFollow(e.target.checked)} />}
            label="Follow" />
        </Stack>
        {logs.isPending ? (
          <Loading label="Loading logs" />
        ) : logs.isError && !logs.data ? (
          <ErrorAlert error={logs.error} onRetry={() => void logs.refetch()} />
        ) : lines.length === 0 ? (
          <Typography color="text.secondary">No log lines{service ? ` from ${service}` : ""} yet.</Typography>
        ) : (
          <Box ref={box} role="log" aria-label="Device logs" aria-live="off" tabIndex={0}
            onScroll={(e) => {
              const el = e.currentTarget;
              pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
            }}
            sx={{ fontFamily: "monospace", fontSize: 12, bgcolor: "grey.900", color: "grey.100", p: 1,
              borderRadius: 1, height: 320, overflow: "auto", whiteSpace: "pre-wrap", overflowWrap: "anywhere" }}>
            {lines.map((l, i) => (
              <div key={`${l.timestamp}-${i}`} style={{ color: l.isStderr ? "#ff8a80" : undefined }}>
                <span style={{ opacity: 0.6 }}>{new Date(l.timestamp).toLocaleTimeString()} </span>
                {l.serviceName && <span style={{ opacity: 0.8 }}>[{l.serviceName}] </span>}
                {l.message}
              </div>
            ))}
          </Box>
        )}
        {logs.isError && logs.data && <ErrorAlert error={logs.error} />}
      </CardContent>
    </Card>
  );
}
