import AddIcon from "@mui/icons-material/Add";
import Button from "@mui/material/Button";
import FormControlLabel from "@mui/material/FormControlLabel";
import Switch from "@mui/material/Switch";
import Typography from "@mui/material/Typography";
import { useState } from "react";

import {
  keyStatus, useProvisioningKeys, useRevokeProvisioningKey, type ProvisioningKey, type ProvisioningKeyCreated,
} from "../../api/provisioning";
import { usePermissions } from "../../auth/useAuth";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { PageHeader } from "../../components/PageHeader";
import { StatusChip } from "../../components/StatusChip";
import { CreateKeyDialog } from "./CreateKeyDialog";
import { SecretOnce } from "./SecretOnce";

const when = (iso: string | null, none: string) => (iso ? new Date(iso).toLocaleString() : none);

/** Provisioning keys register devices. The secret is shown once, when the key is made; afterwards only its prefix
 *  identifies it. */
export default function ProvisioningKeysPage() {
  const { can } = usePermissions();
  if (!can("provisioningKeys.view")) return <ErrorAlert error="Provisioning keys are managed by admins." />;
  return <KeysView />;
}

function KeysView() {
  const { can } = usePermissions();
  const [includeRevoked, setIncludeRevoked] = useState(false);
  const keys = useProvisioningKeys(includeRevoked);
  const revoke = useRevokeProvisioningKey();
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<ProvisioningKeyCreated | null>(null);
  const [revoking, setRevoking] = useState<ProvisioningKey | null>(null);

  const columns: Column<ProvisioningKey>[] = [
    { key: "prefix", header: "Key", render: (k) => <code>{k.keyPrefix}…</code> },
    { key: "description", header: "Description", render: (k) => k.description ?? "—" },
    { key: "fleet", header: "Fleet", hideBelow: "sm", render: (k) => k.fleet?.name ?? "—" },
    { key: "devices", header: "Devices", align: "right",
      render: (k) => `${k.devicesRegistered}${k.maxDevices === null ? "" : ` of ${k.maxDevices}`}` },
    { key: "expires", header: "Expires", hideBelow: "md", render: (k) => when(k.expiresAt, "never") },
    { key: "status", header: "Status", render: (k) => <StatusChip status={keyStatus(k)} /> },
    { key: "created", header: "Created", hideBelow: "lg",
      render: (k) => `${when(k.createdAt, "")}${k.createdBy ? ` by ${k.createdBy}` : ""}` },
  ];
  if (can("provisioningKeys.manage")) {
    columns.push({ key: "actions", header: "Actions", align: "right", render: (k) => (k.revokedAt ? null : (
      <Button color="error" size="small" aria-label={`Revoke key ${k.keyPrefix}`}
        onClick={() => { revoke.reset(); setRevoking(k); }}>Revoke</Button>
    )) });
  }

  return (
    <>
      <PageHeader
        title="Provisioning keys"
        subtitle="Devices register with a provisioning key, then use their own key."
        actions={can("provisioningKeys.manage") && (
          <Button variant="contained" startIcon={<AddIcon />} onClick={() => setCreating(true)}>New key</Button>
        )}
      />
      <FormControlLabel sx={{ mb: 1 }} label="Show revoked keys"
        control={<Switch checked={includeRevoked} onChange={(e) => setIncludeRevoked(e.target.checked)} />} />
      <DataTable
        label="Provisioning keys"
        columns={columns}
        rows={keys.data}
        rowKey={(k) => k.id}
        loading={keys.isPending}
        fetching={keys.isFetching && !keys.isPending}
        error={keys.error}
        onRetry={() => void keys.refetch()}
        empty={<EmptyState title="No provisioning keys">
          Create one to register devices: <code>iotistic agent</code> and the simulator take it.
        </EmptyState>}
      />
      {creating && (
        <CreateKeyDialog onClose={() => setCreating(false)}
          onCreated={(key) => { setCreating(false); setCreated(key); }} />
      )}
      {created && (
        <SecretOnce title="Provisioning key created" label="Provisioning key" secret={created.key}
          onClose={() => setCreated(null)}>
          <Typography sx={{ mb: 2 }}>
            {created.description ?? "The new key"}
            {created.fleet ? ` registers devices into fleet ${created.fleet.name}` : " registers devices"}
            {created.maxDevices === null ? "." : `, up to ${created.maxDevices}.`}
          </Typography>
        </SecretOnce>
      )}
      <ConfirmDialog
        open={revoking !== null}
        title={`Revoke key ${revoking?.keyPrefix ?? ""}…?`}
        confirmLabel="Revoke"
        destructive
        busy={revoke.isPending}
        error={revoke.error}
        onClose={() => setRevoking(null)}
        onConfirm={() => revoking && revoke.mutate(revoking.id, { onSuccess: () => setRevoking(null) })}
      >
        No new device can register with it. Devices already registered keep working with their own keys.
      </ConfirmDialog>
    </>
  );
}
