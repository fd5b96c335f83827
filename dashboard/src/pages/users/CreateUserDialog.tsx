import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogContentText from "@mui/material/DialogContentText";
import DialogTitle from "@mui/material/DialogTitle";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useId, useMemo, useState, type FormEvent } from "react";

import { errorAt, fieldErrors, unclaimed } from "../../api/fieldErrors";
import type { Role } from "../../api/types";
import { useCreateUser } from "../../api/users";
import { ErrorAlert } from "../../components/ErrorAlert";

// Refusals without field details, placed at the field they are about.
const CODES = { weak_password: "password", conflict: "email" };

export function CreateUserDialog({ roles, onClose }: { roles: Role[]; onClose: () => void }) {
  const titleId = useId();
  const create = useCreateUser();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const errors = useMemo(() => fieldErrors(create.error, CODES), [create.error]);
  const leftover = create.error ? unclaimed(errors, ["email", "password", "role"]) : [];
  const field = (path: string, hint?: string) => {
    const message = errorAt(errors, path);
    return { error: !!message, helperText: message ?? hint };
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate({ email: email.trim(), password, role }, { onSuccess: onClose });
  };

  return (
    <Dialog open onClose={create.isPending ? undefined : onClose} aria-labelledby={titleId} fullWidth maxWidth="sm">
      <form onSubmit={submit} noValidate>
        <DialogTitle id={titleId}>New user</DialogTitle>
        <DialogContent>
          <DialogContentText sx={{ mb: 2 }}>
            Give the new user their email and this first password over a safe channel; they sign in with it.
          </DialogContentText>
          <Stack spacing={2}>
            <TextField label="Email" type="email" required autoFocus autoComplete="off" value={email}
              onChange={(e) => setEmail(e.target.value)} {...field("email")} />
            <TextField label="Password" type="password" required autoComplete="new-password" value={password}
              onChange={(e) => setPassword(e.target.value)} {...field("password", "At least 10 characters")} />
            <TextField select label="Role" value={role} onChange={(e) => setRole(e.target.value as Role)}
              {...field("role", ROLE_HELP[role])}>
              {roles.map((r) => <MenuItem key={r} value={r}>{r}</MenuItem>)}
            </TextField>
          </Stack>
          {create.error != null && (leftover.length > 0 || Object.keys(errors.byPath).length === 0) && (
            <ErrorAlert error={create.error} />
          )}
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose} disabled={create.isPending}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={create.isPending}>Create user</Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}

export const ROLE_HELP: Record<Role, string> = {
  viewer: "Reads everything, changes nothing",
  operator: "Also edits devices, tags, targets and releases, and deploys",
  admin: "Also provisioning keys, users, fleets, MQTT accounts and the audit log",
  owner: "Also the licence and other owners",
};
