import Button from "@mui/material/Button";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useEffect, useRef, useState } from "react";

import { DEVICE_STATUSES, useFleetOptions, type DeviceFilters } from "../../api/devices";
import { hasFilters } from "./filters";

const ANY = "";
// Selects show "Any" rather than an empty box under the label.
const SELECT_PROPS = { inputLabel: { shrink: true }, select: { displayEmpty: true } } as const;

/** Text that updates the filter after typing pauses, so each keystroke does not query 10,000 devices. */
function useDebounced(value: string, onSettle: (v: string) => void, ms = 300) {
  const settle = useRef(onSettle);
  settle.current = onSettle;
  useEffect(() => {
    const t = setTimeout(() => settle.current(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
}

export function DeviceFilterBar({ filters, onChange }: { filters: DeviceFilters;
  onChange: (f: DeviceFilters) => void }) {
  const fleets = useFleetOptions();
  const [text, setText] = useState(filters.text ?? "");
  const [tag, setTag] = useState(filters.tag ?? "");
  // The URL can change under us (back button, "clear"): follow it.
  useEffect(() => setText(filters.text ?? ""), [filters.text]);
  useEffect(() => setTag(filters.tag ?? ""), [filters.tag]);
  useDebounced(text, (v) => { if ((filters.text ?? "") !== v.trim()) onChange({ ...filters, text: v.trim() || undefined }); });
  useDebounced(tag, (v) => { if ((filters.tag ?? "") !== v.trim()) onChange({ ...filters, tag: v.trim() || undefined }); });

  const online = filters.online === undefined ? ANY : String(filters.online);
  return (
    <Stack direction="row" useFlexGap flexWrap="wrap" spacing={1.5} sx={{ mb: 2 }} role="search"
      aria-label="Filter devices">
      <TextField size="small" label="Search name or UUID" value={text} onChange={(e) => setText(e.target.value)}
        sx={{ minWidth: 220, flex: "1 1 220px" }} slotProps={{ htmlInput: { maxLength: 128 } }} />
      <TextField select size="small" label="Online" slotProps={SELECT_PROPS} value={online} sx={{ minWidth: 120 }}
        onChange={(e) => onChange({ ...filters, online: e.target.value === ANY ? undefined : e.target.value === "true" })}>
        <MenuItem value={ANY}>Any</MenuItem>
        <MenuItem value="true">Online</MenuItem>
        <MenuItem value="false">Offline</MenuItem>
      </TextField>
      <TextField select size="small" label="Status" slotProps={SELECT_PROPS} value={filters.status ?? ANY} sx={{ minWidth: 140 }}
        onChange={(e) => onChange({ ...filters, status: (e.target.value || undefined) as DeviceFilters["status"] })}>
        <MenuItem value={ANY}>Any</MenuItem>
        {DEVICE_STATUSES.map((s) => <MenuItem key={s} value={s}>{s}</MenuItem>)}
      </TextField>
      <TextField select size="small" label="Fleet" slotProps={SELECT_PROPS} value={filters.fleet ?? ANY} sx={{ minWidth: 160 }}
        onChange={(e) => onChange({ ...filters, fleet: e.target.value || undefined })}
        helperText={fleets.isError ? "Fleets could not be loaded" : undefined} error={fleets.isError}>
        <MenuItem value={ANY}>Any</MenuItem>
        {/* A fleet named in the URL but not (yet) listed stays selectable. */}
        {filters.fleet && !fleets.data?.some((f) => f.name === filters.fleet) && (
          <MenuItem value={filters.fleet}>{filters.fleet}</MenuItem>
        )}
        {(fleets.data ?? []).map((f) => <MenuItem key={f.id} value={f.name}>{f.name}</MenuItem>)}
      </TextField>
      <TextField size="small" label="Tag (key or key:value)" value={tag} onChange={(e) => setTag(e.target.value)}
        sx={{ minWidth: 180 }} slotProps={{ htmlInput: { maxLength: 321 } }} />
      {hasFilters(filters) && (
        <Button onClick={() => { setText(""); setTag(""); onChange({}); }}>Clear filters</Button>
      )}
    </Stack>
  );
}
