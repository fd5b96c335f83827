import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useId, useMemo, useState, type FormEvent } from "react";

import { errorAt, fieldErrors } from "../../api/fieldErrors";
import { useFleets } from "../../api/fleets";
import { useCreateProvisioningKey, type ProvisioningKeyCreated } from "../../api/provisioning";
import { ErrorAlert } from "../../components/ErrorAlert";

/** `datetime-local` has no zone: it is the user's local time, sent as an absolute instant. */
function toInstant(local: string): string | null {
  if (!local) return null;
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? local : t.toISOString();
}

export function CreateKeyDialog({ onClose, onCreated }: { onClose: () => void;
  onCreated: (key: ProvisioningKeyCreated) => void }) {
  const titleId = useId();
  const fleets = useFleets();
  const create = useCreateProvisioningKey();
  const [description, setDescription] = useState("");
  const [fleet, setFleet] = useState<number | "">("");
  const [maxDevices, setMaxDevices] = useState("");
  const [expires, setExpires] = useState("");
  const errors = useMemo(() => fieldErrors(create.error), [create.error]);
  const shown = ["description", "fleet", "maxDevices", "expiresAt"].filter((f) => errorAt(errors, f));

  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate({
      description: description.trim() || null,
      fleet: fleet === "" ? null : fleet,
      // Sent as typed: the API explains a number it refuses.
      maxDevices: maxDevices.trim() === "" ? null : Number(maxDevices),
      expiresAt: toInstant(expires),
    }, { onSuccess: onCreated });
  };
  const field = (name: string, hint?: string) => {
    const message = errorAt(errors, name);
    return { error: !!message, helperText: message ?? hint };
  };

  return (
    <Dialog open onClose={create.isPending ? undefined : onClose} aria-labelledby={titleId} fullWidth maxWidth="sm">
      <form onSubmit={submit} noValidate>
        <DialogTitle id={titleId}>New provisioning key</DialogTitle>
        <DialogContent>
          <Stack spacing={2} sx={{ mt: 1 }}>
            <TextField label="Description" autoFocus value={description}
              onChange={(e) => setDescription(e.target.value)} {...field("description", "What or who it is for")} />
            <TextField select label="Fleet" value={fleet}
              onChange={(e) => setFleet(e.target.value === "" ? "" : Number(e.target.value))}
              {...field("fleet", "Devices registered with the key join this fleet")}>
              <MenuItem value="">No fleet</MenuItem>
              {(fleets.data ?? []).map((f) => <MenuItem key={f.id} value={f.id}>{f.name}</MenuItem>)}
            </TextField>
            <TextField label="Maximum devices" type="number" value={maxDevices}
              onChange={(e) => setMaxDevices(e.target.value)} {...field("maxDevices", "Empty: no limit")}
              slotProps={{ htmlInput: { min: 1 } }} />
            <TextField label="Expires" type="datetime-local" value={expires}
              onChange={(e) => setExpires(e.target.value)} {...field("expiresAt", "Empty: never")}
              slotProps={{ inputLabel: { shrink: true } }} />
          </Stack>
          {create.error != null && shown.length === 0 && <ErrorAlert error={create.error} />}
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose} disabled={create.isPending}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={create.isPending}>Create key</Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
