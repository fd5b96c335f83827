import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogContentText from "@mui/material/DialogContentText";
import DialogTitle from "@mui/material/DialogTitle";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useId, useState, type FormEvent } from "react";

import { useDeployRelease, useFleets, type Release, type Selection } from "../../api/fleets";
import { errorMessage } from "../../api/client";

/** Deploy a release to a fleet, a tag selection (`key` or `key:value`), or the devices of a fleet with a tag. One
 *  call, one transaction: every selected device gets the release or none does. */
export function DeployDialog({ release, defaultFleet, open, onClose, onDeployed }: {
  release: Release; defaultFleet?: string; open: boolean; onClose: () => void;
  onDeployed: (selection: Selection, count: number) => void;
}) {
  const titleId = useId();
  const fleets = useFleets();
  const deploy = useDeployRelease(release.id);
  const [fleet, setFleet] = useState(defaultFleet ?? "");
  const [tag, setTag] = useState("");
  const [missing, setMissing] = useState(false);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const selection: Selection = {};
    if (fleet) selection.fleet = fleet;
    if (tag.trim()) selection.tag = tag.trim();
    setMissing(!selection.fleet && !selection.tag);
    if (!selection.fleet && !selection.tag) return;
    deploy.mutate(selection, { onSuccess: (out) => onDeployed(selection, out.count) });
  };

  return (
    <Dialog open={open} onClose={deploy.isPending ? undefined : onClose} aria-labelledby={titleId} fullWidth
      maxWidth="sm">
      <form onSubmit={submit} noValidate>
        <DialogTitle id={titleId}>Deploy {release.name}</DialogTitle>
        <DialogContent>
          <DialogContentText sx={{ mb: 2 }}>
            Every selected device gets this release as its new target version. Choose a fleet, a tag, or both
            (the fleet's devices with the tag).
          </DialogContentText>
          <Stack spacing={2}>
            {/* Until the fleets are loaded the select has no option for the preselected one. */}
            <TextField select label="Fleet" value={fleets.data?.some((f) => f.name === fleet) ? fleet : ""}
              onChange={(e) => setFleet(e.target.value)}
              helperText={fleets.error ? `Fleets could not be loaded: ${errorMessage(fleets.error)}` : undefined}>
              <MenuItem value="">Any fleet</MenuItem>
              {(fleets.data ?? []).map((f) => (
                <MenuItem key={f.id} value={f.name}>{f.name} ({f.deviceCount} devices)</MenuItem>
              ))}
            </TextField>
            <TextField label="Tag" value={tag} onChange={(e) => setTag(e.target.value)}
              placeholder="site:berlin" helperText="key or key:value (optional)" />
          </Stack>
          {missing && <Alert severity="error" sx={{ mt: 2 }}>Choose a fleet or a tag to deploy to.</Alert>}
          {deploy.error != null && (
            <Alert severity="error" role="alert" sx={{ mt: 2 }}>{errorMessage(deploy.error)}</Alert>
          )}
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose} disabled={deploy.isPending}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={deploy.isPending}>
            {deploy.isPending ? "Deploying…" : "Deploy"}
          </Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
