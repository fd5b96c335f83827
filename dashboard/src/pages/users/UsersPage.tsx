import AddIcon from "@mui/icons-material/Add";
import Button from "@mui/material/Button";
import MenuItem from "@mui/material/MenuItem";
import TextField from "@mui/material/TextField";
import { useState } from "react";

import type { Role } from "../../api/types";
import { useDeleteUser, useUpdateUser, useUsers, type UserAccount } from "../../api/users";
import { useAuth, usePermissions } from "../../auth/useAuth";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { PageHeader } from "../../components/PageHeader";
import { StatusChip } from "../../components/StatusChip";
import { CreateUserDialog } from "./CreateUserDialog";

const ALL_ROLES: Role[] = ["viewer", "operator", "admin", "owner"];
// The table's role selects are labelled for screen readers only: the column header says it for everyone else.
const HIDDEN = { position: "absolute", width: 1, height: 1, overflow: "hidden", clip: "rect(0 0 0 0)",
  whiteSpace: "nowrap" } as const;

type Pending =
  | { kind: "role"; user: UserAccount; role: Role }
  | { kind: "active"; user: UserAccount; active: boolean }
  | { kind: "delete"; user: UserAccount };

function question(p: Pending): string {
  if (p.kind === "role") return `Make ${p.user.email} ${p.role === "admin" || p.role === "owner" ? "an" : "a"} ${p.role}?`;
  if (p.kind === "active") return `${p.active ? "Enable" : "Disable"} ${p.user.email}?`;
  return `Remove ${p.user.email}?`;
}

/** Users and their roles. Admins manage users up to admin; only owners grant or touch the owner role (the API's
 *  rule, so controls it would refuse are not offered). The API keeps at least one owner and says so. */
export default function UsersPage() {
  const { can } = usePermissions();
  if (!can("users.view")) return <ErrorAlert error="Users are managed by admins." />;
  return <UsersView />;
}

function UsersView() {
  const { user: me } = useAuth();
  const { atLeast } = usePermissions();
  const users = useUsers();
  const update = useUpdateUser();
  const remove = useDeleteUser();
  const [creating, setCreating] = useState(false);
  const [pending, setPending] = useState<Pending | null>(null);
  const isOwner = atLeast("owner");
  const grantable = ALL_ROLES.filter((r) => r !== "owner" || isOwner);
  const mayManage = (u: UserAccount) => u.role !== "owner" || isOwner;
  const busy = update.isPending || remove.isPending;

  const ask = (p: Pending) => {
    update.reset();
    remove.reset();
    setPending(p);
  };
  const confirm = () => {
    if (!pending) return;
    const done = { onSuccess: () => setPending(null) };
    if (pending.kind === "role") update.mutate({ id: pending.user.id, role: pending.role }, done);
    else if (pending.kind === "active") update.mutate({ id: pending.user.id, isActive: pending.active }, done);
    else remove.mutate(pending.user.id, done);
  };

  const columns: Column<UserAccount>[] = [
    { key: "email", header: "Email", render: (u) => <>{u.email}{u.id === me?.id && " (you)"}</> },
    { key: "role", header: "Role", render: (u) => (mayManage(u) ? (
      <TextField select size="small" variant="standard" value={u.role} label={`Role of ${u.email}`}
        slotProps={{ inputLabel: { sx: HIDDEN } }}
        onChange={(e) => ask({ kind: "role", user: u, role: e.target.value as Role })}>
        {grantable.map((r) => <MenuItem key={r} value={r}>{r}</MenuItem>)}
      </TextField>
    ) : u.role) },
    { key: "status", header: "Status", render: (u) => <StatusChip status={u.isActive ? "active" : "disabled"} /> },
    { key: "login", header: "Last sign-in", hideBelow: "md",
      render: (u) => (u.lastLoginAt ? new Date(u.lastLoginAt).toLocaleString() : "never") },
    { key: "actions", header: "Actions", align: "right", render: (u) => (mayManage(u) && (
      <>
        <Button size="small" aria-label={`${u.isActive ? "Disable" : "Enable"} ${u.email}`}
          onClick={() => ask({ kind: "active", user: u, active: !u.isActive })}>
          {u.isActive ? "Disable" : "Enable"}
        </Button>
        {u.id !== me?.id && (
          <Button size="small" color="error" aria-label={`Remove ${u.email}`}
            onClick={() => ask({ kind: "delete", user: u })}>Remove</Button>
        )}
      </>
    )) },
  ];

  return (
    <>
      <PageHeader
        title="Users"
        subtitle="Who can sign in, and what each role may do."
        actions={<Button variant="contained" startIcon={<AddIcon />} onClick={() => setCreating(true)}>New user</Button>}
      />
      <DataTable label="Users" columns={columns} rows={users.data} rowKey={(u) => u.id} loading={users.isPending}
        error={users.error} onRetry={() => void users.refetch()} empty={<EmptyState title="No users" />} />
      {creating && <CreateUserDialog roles={grantable} onClose={() => setCreating(false)} />}
      <ConfirmDialog open={pending !== null} title={pending ? question(pending) : ""}
        confirmLabel={pending?.kind === "delete" ? "Remove" : "Confirm"} destructive={pending?.kind === "delete"}
        busy={busy} error={update.error ?? remove.error} onClose={() => setPending(null)} onConfirm={confirm}>
        {pending?.user.id === me?.id && pending?.kind !== "delete"
          ? "This changes your own account: you will be signed out and sign in again with the new rights."
          : "Their current sessions end at once; they sign in again with the new rights."}
      </ConfirmDialog>
    </>
  );
}
