import AddIcon from "@mui/icons-material/Add";
import EditIcon from "@mui/icons-material/Edit";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useState, type FormEvent } from "react";
import { Link as RouterLink, useParams } from "react-router-dom";

import { useFleet, useFleets, useUpdateFleet, type Fleet } from "../../api/fleets";
import { Can } from "../../auth/Can";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { ReleaseList } from "./ReleaseList";

/** One fleet: its description, its devices (on the devices page, filtered) and the releases made for it. */
export default function FleetPage() {
  const id = Number(useParams().id);
  const fleet = useFleet(id);
  const fleets = useFleets();
  const [editing, setEditing] = useState(false);

  if (fleet.isPending) return <Loading label="Loading the fleet" />;
  if (fleet.error) return <ErrorAlert error={fleet.error} onRetry={() => void fleet.refetch()} />;
  const f = fleet.data;
  return (
    <>
      <PageHeader
        title={`Fleet ${f.name}`}
        subtitle={`${f.deviceCount} device${f.deviceCount === 1 ? "" : "s"}`}
        actions={<>
          <Button component={RouterLink} to={`/devices?fleet=${encodeURIComponent(f.name)}`}>Show devices</Button>
          <Can action="releases.create">
            <Button variant="contained" startIcon={<AddIcon />} component={RouterLink}
              to={`/fleets/releases/new?fleet=${f.id}`}>New release</Button>
          </Can>
        </>}
      />
      <Card variant="outlined" sx={{ mb: 3 }}>
        <CardContent>
          {editing ? <DescriptionForm fleet={f} onDone={() => setEditing(false)} /> : (
            <Box sx={{ display: "flex", gap: 2, alignItems: "center" }}>
              <Typography sx={{ flex: 1, whiteSpace: "pre-wrap" }} color={f.description ? undefined : "text.secondary"}>
                {f.description ?? "No description."}
              </Typography>
              <Can action="fleets.manage">
                <Button startIcon={<EditIcon />} onClick={() => setEditing(true)}>Edit description</Button>
              </Can>
            </Box>
          )}
        </CardContent>
      </Card>
      <Typography variant="h6" component="h2" gutterBottom>Releases for this fleet</Typography>
      <ReleaseList fleets={fleets.data} fleetId={f.id} />
    </>
  );
}

function DescriptionForm({ fleet, onDone }: { fleet: Fleet; onDone: () => void }) {
  const update = useUpdateFleet(fleet.id);
  const [text, setText] = useState(fleet.description ?? "");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    update.mutate({ description: text.trim() || null }, { onSuccess: onDone });
  };
  return (
    <Box component="form" onSubmit={submit} noValidate>
      <TextField label="Description" fullWidth multiline autoFocus value={text} onChange={(e) => setText(e.target.value)} />
      {update.error != null && <ErrorAlert error={update.error} />}
      <Stack direction="row" spacing={1} sx={{ mt: 1 }}>
        <Button type="submit" variant="contained" disabled={update.isPending}>Save</Button>
        <Button onClick={onDone} disabled={update.isPending}>Cancel</Button>
      </Stack>
    </Box>
  );
}
