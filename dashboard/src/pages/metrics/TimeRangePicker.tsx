import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import MenuItem from "@mui/material/MenuItem";
import TextField from "@mui/material/TextField";
import ToggleButton from "@mui/material/ToggleButton";
import ToggleButtonGroup from "@mui/material/ToggleButtonGroup";
import { useState } from "react";

import { fromLocalInput, PRESETS, rangeError, toLocalInput, type TimeRange } from "./timeRange";

export const BUCKETS: { label: string; seconds: number | undefined }[] = [
  { label: "Automatic", seconds: undefined },
  { label: "Raw readings", seconds: 0 },
  { label: "1 minute", seconds: 60 },
  { label: "5 minutes", seconds: 300 },
  { label: "15 minutes", seconds: 900 },
  { label: "1 hour", seconds: 3600 },
  { label: "1 day", seconds: 86_400 },
];

interface Props {
  range: TimeRange;
  onRange: (range: TimeRange) => void;
  bucket: number | undefined;
  onBucket: (seconds: number | undefined) => void;
  onRefresh: () => void;
}

/** Last 15 min ... 30 days, or a custom from/to (local time); the bucket size, automatic by default. */
export function TimeRangePicker({ range, onRange, bucket, onBucket, onRefresh }: Props) {
  const [custom, setCustom] = useState(range.kind === "absolute");
  const now = new Date();
  const [from, setFrom] = useState(toLocalInput(range.kind === "absolute" ? range.from
    : new Date(now.getTime() - 24 * 3600_000)));
  const [to, setTo] = useState(toLocalInput(range.kind === "absolute" ? range.to : now));
  const draft: TimeRange = { kind: "absolute", from: fromLocalInput(from), to: fromLocalInput(to) };
  const draftError = custom ? rangeError(draft) : null;

  return (
    <Box sx={{ display: "flex", flexWrap: "wrap", gap: 2, alignItems: "flex-start" }}>
      <ToggleButtonGroup size="small" exclusive aria-label="Time range"
        value={custom ? "custom" : range.kind === "relative" ? String(range.seconds) : "custom"}
        onChange={(_e, v: string | null) => {
          if (v === null) return;
          if (v === "custom") {
            setCustom(true);
            return;
          }
          setCustom(false);
          onRange({ kind: "relative", seconds: Number(v) });
        }}>
        {PRESETS.map((p) => <ToggleButton key={p.seconds} value={String(p.seconds)}>{p.label}</ToggleButton>)}
        <ToggleButton value="custom">Custom</ToggleButton>
      </ToggleButtonGroup>
      {custom && (
        <Box component="form" sx={{ display: "flex", flexWrap: "wrap", gap: 1, alignItems: "flex-start" }}
          onSubmit={(e) => {
            e.preventDefault();
            if (!draftError) onRange(draft);
          }}>
          <TextField size="small" type="datetime-local" label="From" value={from}
            onChange={(e) => setFrom(e.target.value)} slotProps={{ inputLabel: { shrink: true } }} />
          <TextField size="small" type="datetime-local" label="To" value={to}
            onChange={(e) => setTo(e.target.value)} slotProps={{ inputLabel: { shrink: true } }}
            error={draftError !== null} helperText={draftError ?? " "} />
          <Button type="submit" variant="outlined" disabled={draftError !== null}>Apply</Button>
        </Box>
      )}
      <TextField select size="small" label="Bucket" value={bucket === undefined ? "auto" : String(bucket)}
        onChange={(e) => onBucket(e.target.value === "auto" ? undefined : Number(e.target.value))}
        sx={{ minWidth: 150 }}>
        {BUCKETS.map((b) => (
          <MenuItem key={b.label} value={b.seconds === undefined ? "auto" : String(b.seconds)}>{b.label}</MenuItem>
        ))}
      </TextField>
      <Button onClick={onRefresh}>Refresh</Button>
    </Box>
  );
}
