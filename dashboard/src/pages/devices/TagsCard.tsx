import AddIcon from "@mui/icons-material/Add";
import DeleteIcon from "@mui/icons-material/DeleteOutline";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Chip from "@mui/material/Chip";
import IconButton from "@mui/material/IconButton";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";

import { useSaveTags } from "../../api/devices";
import { Can } from "../../auth/Can";
import { ErrorAlert } from "../../components/ErrorAlert";

// The API's tag key pattern (schemas.py TAG_KEY_PATTERN): no ":" because the filter is key:value.
const KEY = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_VALUE = 256;
const MAX_TAGS = 100;

interface Row {
  id: number;
  key: string;
  value: string;
}

/** Problems with the edited tags, by row id, before the API is asked. */
export function tagProblems(rows: Row[]): Map<number, string> {
  const problems = new Map<number, string>();
  const seen = new Set<string>();
  for (const r of rows) {
    const key = r.key.trim();
    if (!KEY.test(key)) problems.set(r.id, "Key: 1–64 letters, digits, . _ or -");
    else if (seen.has(key)) problems.set(r.id, "This key is used twice");
    else if (r.value.length > MAX_VALUE) problems.set(r.id, `Value: at most ${MAX_VALUE} characters`);
    seen.add(key);
  }
  return problems;
}

function TagsEditor({ uuid, tags, onDone }: { uuid: string; tags: Record<string, string>; onDone: () => void }) {
  const save = useSaveTags(uuid);
  const [nextId, setNextId] = useState(Object.keys(tags).length + 1);
  const [rows, setRows] = useState<Row[]>(() => Object.entries(tags).map(([key, value], i) => ({ id: i, key, value })));
  const problems = tagProblems(rows);
  const set = (id: number, patch: Partial<Row>) => setRows((rs) => rs.map((r) => (r.id === id ? { ...r, ...patch } : r)));
  const add = () => {
    setRows((rs) => [...rs, { id: nextId, key: "", value: "" }]);
    setNextId((n) => n + 1);
  };
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (problems.size) return;
    try {
      await save.mutateAsync(Object.fromEntries(rows.map((r) => [r.key.trim(), r.value])));
      onDone();
    } catch {
      // shown from save.error
    }
  };
  return (
    <Box component="form" onSubmit={submit} aria-label="Edit tags" noValidate>
      <Stack spacing={1}>
        {rows.map((r, i) => (
          <Stack key={r.id} direction="row" spacing={1} alignItems="flex-start">
            <TextField size="small" label={`Key ${i + 1}`} value={r.key} onChange={(e) => set(r.id, { key: e.target.value })}
              error={problems.has(r.id)} helperText={problems.get(r.id) ?? " "} sx={{ flex: 1 }} />
            <TextField size="small" label={`Value ${i + 1}`} value={r.value}
              onChange={(e) => set(r.id, { value: e.target.value })} sx={{ flex: 1 }} />
            <IconButton aria-label={`Remove tag ${r.key || i + 1}`} onClick={() => setRows((rs) => rs.filter((x) => x.id !== r.id))}>
              <DeleteIcon />
            </IconButton>
          </Stack>
        ))}
        {rows.length === 0 && <Typography color="text.secondary">No tags. Add one below.</Typography>}
      </Stack>
      {save.isError && <ErrorAlert error={save.error} />}
      <Stack direction="row" spacing={1} sx={{ mt: 1 }} flexWrap="wrap" useFlexGap>
        <Button startIcon={<AddIcon />} onClick={add} disabled={rows.length >= MAX_TAGS}>Add tag</Button>
        <Box sx={{ flexGrow: 1 }} />
        <Button onClick={onDone} disabled={save.isPending}>Cancel</Button>
        <Button type="submit" variant="contained" disabled={save.isPending || problems.size > 0}>
          {save.isPending ? "Saving…" : "Save tags"}
        </Button>
      </Stack>
    </Box>
  );
}

export function TagsCard({ uuid, tags }: { uuid: string; tags: Record<string, string> }) {
  const [editing, setEditing] = useState(false);
  const entries = Object.entries(tags);
  return (
    <Card variant="outlined">
      <CardContent>
        <Stack direction="row" alignItems="center" sx={{ mb: 1 }}>
          <Typography variant="h6" component="h2" sx={{ flexGrow: 1 }}>Tags</Typography>
          {!editing && (
            <Can action="devices.tags">
              <Button size="small" onClick={() => setEditing(true)}>Edit tags</Button>
            </Can>
          )}
        </Stack>
        {editing ? (
          <TagsEditor uuid={uuid} tags={tags} onDone={() => setEditing(false)} />
        ) : entries.length === 0 ? (
          <Typography color="text.secondary">No tags.</Typography>
        ) : (
          <Box sx={{ display: "flex", gap: 1, flexWrap: "wrap" }} data-testid="device-tags">
            {entries.map(([k, v]) => <Chip key={k} label={v ? `${k}: ${v}` : k} />)}
          </Box>
        )}
      </CardContent>
    </Card>
  );
}
