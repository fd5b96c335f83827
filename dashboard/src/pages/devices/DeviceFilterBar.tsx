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

/**
 * A text filter typed here and pushed (e.g. to the URL) after typing pauses, so each keystroke does not query
 * 10,000 devices. Changes of `value` from elsewhere (back button, "clear") are followed, but not the echo of what
 * was pushed: on a slow machine that echo arrives while the user types on, and following it dropped their keys.
 */
export function useFilterText(value: string | undefined, push: (v: string | undefined) => void, ms = 300) {
  const [text, setText] = useState(value ?? "");
  const pushed = useRef(value ?? "");
  const pushLatest = useRef(push);
  pushLatest.current = push;
  useEffect(() => {
    const v = value ?? "";
    if (v !== pushed.current) {
      pushed.current = v;
      setText(v);
    }
  }, [value]);
  useEffect(() => {
    const t = setTimeout(() => {
      const v = text.trim();
      if (v !== pushed.current) {
        pushed.current = v;
        pushLatest.current(v || undefined);
      }
    }, ms);
    return () => clearTimeout(t);
  }, [text, ms]);
  return [text, setText] as const;
}

export function DeviceFilterBar({ filters, onChange }: { filters: DeviceFilters;
  onChange: (f: DeviceFilters) => void }) {
  const fleets = useFleetOptions();
  const [text, setText] = useFilterText(filters.text, (v) => onChange({ ...filters, text: v }));
  const [tag, setTag] = useFilterText(filters.tag, (v) => onChange({ ...filters, tag: v }));

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
