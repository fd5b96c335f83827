import DeleteIcon from "@mui/icons-material/Delete";
import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import IconButton from "@mui/material/IconButton";
import Link from "@mui/material/Link";
import Typography from "@mui/material/Typography";
import { useState } from "react";
import { Link as RouterLink, useNavigate, useParams } from "react-router-dom";

import {
  useDeleteMqttAccount, useDeleteMqttRule, useMqttAccount, useUpdateMqttAccount, type MqttAccount, type MqttRule,
} from "../../api/mqtt";
import { Can } from "../../auth/Can";
import { usePermissions } from "../../auth/useAuth";
import { ConfirmDialog } from "../../components/ConfirmDialog";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { StatusChip } from "../../components/StatusChip";
import { SecretOnce } from "../provisioning/SecretOnce";
import { RuleForm } from "./RuleForm";

/** The rule every device account is born with; it goes with the device (the API refuses to remove it). */
function isDeviceOwnRule(account: MqttAccount, rule: MqttRule): boolean {
  return account.kind === "device" && rule.topic === `iot/device/${account.username}/#`;
}

export default function MqttAccountPage() {
  const id = Number(useParams().id);
  const account = useMqttAccount(id);
  if (account.isPending) return <Loading label="Loading the account" />;
  if (account.error) return <ErrorAlert error={account.error} onRetry={() => void account.refetch()} />;
  return <AccountView account={account.data} />;
}

function AccountView({ account }: { account: MqttAccount }) {
  const { can } = usePermissions();
  const navigate = useNavigate();
  const update = useUpdateMqttAccount(account.id);
  const remove = useDeleteMqttAccount();
  const removeRule = useDeleteMqttRule(account.id);
  const [password, setPassword] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<"delete" | "reset" | null>(null);
  const isDevice = account.kind === "device";
  const manage = can("mqtt.manage");

  const columns: Column<MqttRule>[] = [
    { key: "topic", header: "Topic filter", render: (r) => <code>{r.topic}</code> },
    { key: "access", header: "Access", render: (r) => r.access },
  ];
  if (manage) {
    columns.push({ key: "actions", header: "Actions", align: "right", render: (r) => (isDeviceOwnRule(account, r)
      ? <Typography variant="body2" color="text.secondary">the device's own</Typography>
      : (
        <IconButton aria-label={`Remove rule ${r.access} ${r.topic}`} disabled={removeRule.isPending}
          onClick={() => removeRule.mutate(r.id)}><DeleteIcon /></IconButton>
      )) });
  }

  return (
    <>
      <PageHeader
        title={`MQTT account ${account.username}`}
        subtitle={<>{account.kind} account, created {new Date(account.createdAt).toLocaleString()}{" "}
          <StatusChip status={account.isActive ? "active" : "disabled"} /></>}
        actions={manage && !isDevice && <>
          <Button onClick={() => update.mutate({ isActive: !account.isActive })} disabled={update.isPending}>
            {account.isActive ? "Disable" : "Enable"}
          </Button>
          <Button onClick={() => { update.reset(); setConfirm("reset"); }}>Reset password</Button>
          <Button color="error" startIcon={<DeleteIcon />} onClick={() => { remove.reset(); setConfirm("delete"); }}>
            Delete
          </Button>
        </>}
      />
      {isDevice && account.deviceUuid && (
        <Alert severity="info" sx={{ mb: 2 }}>
          This account belongs to device{" "}
          <Link component={RouterLink} to={`/devices/${encodeURIComponent(account.deviceUuid)}`}>
            {account.deviceUuid}</Link>: it is enabled, disabled and deleted with the device, and gets its password when
          the device registers.
        </Alert>
      )}
      {update.error != null && confirm === null && <ErrorAlert error={update.error} />}
      <Card variant="outlined">
        <CardContent>
          <Typography variant="h6" component="h2" gutterBottom>ACL rules</Typography>
          <DataTable label="ACL rules" columns={columns} rows={account.rules} rowKey={(r) => r.id}
            error={removeRule.error}
            empty={<EmptyState title="No rules">Without rules the account may connect but not read or write.</EmptyState>} />
          <Can action="mqtt.manage">
            <Box sx={{ mt: 2 }}><RuleForm accountId={account.id} /></Box>
          </Can>
        </CardContent>
      </Card>
      <ConfirmDialog open={confirm === "reset"} title={`Reset the password of ${account.username}?`}
        confirmLabel="Reset password" busy={update.isPending} error={update.error} onClose={() => setConfirm(null)}
        onConfirm={() => update.mutate({ resetPassword: true }, { onSuccess: (a) => {
          setConfirm(null);
          setPassword(a.password);
        } })}>
        A new password is generated and shown once. Clients using the old one are refused from now on.
      </ConfirmDialog>
      <ConfirmDialog open={confirm === "delete"} title={`Delete account ${account.username}?`} confirmLabel="Delete"
        destructive busy={remove.isPending} error={remove.error} onClose={() => setConfirm(null)}
        onConfirm={() => remove.mutate(account.id, { onSuccess: () => navigate("/mqtt") })}>
        The account and its rules are removed; clients using it can no longer connect.
      </ConfirmDialog>
      {password && (
        <SecretOnce title={`New password for ${account.username}`} label="Password" secret={password}
          onClose={() => setPassword(null)} />
      )}
    </>
  );
}
