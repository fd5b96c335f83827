import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useId, useMemo, useState, type FormEvent } from "react";

import { useCreateFleet } from "../../api/fleets";
import { errorAt, fieldErrors } from "../../api/fieldErrors";
import { ErrorAlert } from "../../components/ErrorAlert";

export function FleetDialog({ open, onClose }: { open: boolean; onClose: () => void }) {
  const titleId = useId();
  const create = useCreateFleet();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const errors = useMemo(() => fieldErrors(create.error), [create.error]);
  const nameError = errorAt(errors, "name");
  const descriptionError = errorAt(errors, "description");

  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate({ name: name.trim(), description: description.trim() || null }, { onSuccess: onClose });
  };

  return (
    <Dialog open={open} onClose={create.isPending ? undefined : onClose} aria-labelledby={titleId} fullWidth
      maxWidth="sm">
      <form onSubmit={submit} noValidate>
        <DialogTitle id={titleId}>New fleet</DialogTitle>
        <DialogContent>
          <Stack spacing={2} sx={{ mt: 1 }}>
            <TextField label="Name" required autoFocus value={name} onChange={(e) => setName(e.target.value)}
              error={!!nameError}
              helperText={nameError ?? "Letters, digits, _ . - (up to 64, starting with a letter or digit)"} />
            <TextField label="Description" multiline value={description}
              onChange={(e) => setDescription(e.target.value)} error={!!descriptionError}
              helperText={descriptionError} />
          </Stack>
          {create.error != null && !nameError && !descriptionError && <ErrorAlert error={create.error} />}
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose} disabled={create.isPending}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={create.isPending}>Create fleet</Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
