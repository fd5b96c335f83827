import AddIcon from "@mui/icons-material/Add";
import DeleteIcon from "@mui/icons-material/Delete";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import IconButton from "@mui/material/IconButton";
import Link from "@mui/material/Link";
import Typography from "@mui/material/Typography";
import { useState } from "react";
import { Link as RouterLink } from "react-router-dom";

import { useDeleteFleet, useFleets, type Fleet } from "../../api/fleets";
import { Can } from "../../auth/Can";
import { usePermissions } from "../../auth/useAuth";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { PageHeader } from "../../components/PageHeader";
import { FleetDialog } from "./FleetDialog";
import { ReleaseList } from "./ReleaseList";

/** Fleets (named groups of devices) and the releases made for them. */
export default function FleetsPage() {
  const fleets = useFleets();
  const remove = useDeleteFleet();
  const { can } = usePermissions();
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<Fleet | null>(null);

  const columns: Column<Fleet>[] = [
    { key: "name", header: "Fleet", render: (f) => <Link component={RouterLink} to={`/fleets/${f.id}`}>{f.name}</Link> },
    { key: "description", header: "Description", hideBelow: "sm", render: (f) => f.description ?? "—" },
    { key: "devices", header: "Devices", align: "right", render: (f) => f.deviceCount },
    { key: "created", header: "Created", hideBelow: "md", render: (f) => new Date(f.createdAt).toLocaleDateString() },
  ];
  if (can("fleets.manage")) {
    columns.push({ key: "actions", header: "Actions", align: "right",
      render: (f) => (
        <IconButton aria-label={`Delete fleet ${f.name}`} onClick={() => { remove.reset(); setDeleting(f); }}>
          <DeleteIcon />
        </IconButton>
      ) });
  }

  return (
    <>
      <PageHeader
        title="Fleets & releases"
        actions={<>
          <Can action="fleets.manage">
            <Button startIcon={<AddIcon />} onClick={() => setCreating(true)}>New fleet</Button>
          </Can>
          <Can action="releases.create">
            <Button variant="contained" startIcon={<AddIcon />} component={RouterLink} to="/fleets/releases/new">
              New release
            </Button>
          </Can>
        </>}
      />
      <Box component="section" aria-labelledby="fleets-heading" sx={{ mb: 4 }}>
        <Typography variant="h6" component="h2" id="fleets-heading" gutterBottom>Fleets</Typography>
        <DataTable
          label="Fleets"
          columns={columns}
          rows={fleets.data}
          rowKey={(f) => f.id}
          loading={fleets.isPending}
          error={fleets.error}
          onRetry={() => void fleets.refetch()}
          empty={<EmptyState title="No fleets yet">
            A fleet groups devices: provisioning keys can put new devices into one, and releases deploy to one.
          </EmptyState>}
        />
      </Box>
      <Box component="section" aria-labelledby="releases-heading">
        <Typography variant="h6" component="h2" id="releases-heading" gutterBottom>Releases</Typography>
        <ReleaseList fleets={fleets.data} />
      </Box>
      {creating && <FleetDialog open onClose={() => setCreating(false)} />}
      <ConfirmDialog
        open={deleting !== null}
        title={`Delete fleet ${deleting?.name ?? ""}?`}
        confirmLabel="Delete"
        destructive
        busy={remove.isPending}
        error={remove.error}
        onClose={() => setDeleting(null)}
        onConfirm={() => deleting && remove.mutate(deleting.id, { onSuccess: () => setDeleting(null) })}
      >
        A fleet can only be deleted once it has no devices and no active provisioning keys.
      </ConfirmDialog>
    </>
  );
}
