import AddIcon from "@mui/icons-material/Add";
import Button from "@mui/material/Button";
import Link from "@mui/material/Link";
import ToggleButton from "@mui/material/ToggleButton";
import ToggleButtonGroup from "@mui/material/ToggleButtonGroup";
import { useState } from "react";
import { Link as RouterLink } from "react-router-dom";

import { useMqttAccounts, type MqttAccount, type MqttAccountKind, type MqttAccountWithPassword } from "../../api/mqtt";
import { Can } from "../../auth/Can";
import { DataTable, type Column } from "../../components/DataTable";
import { EmptyState } from "../../components/EmptyState";
import { PageHeader } from "../../components/PageHeader";
import { StatusChip } from "../../components/StatusChip";
import { SecretOnce } from "../provisioning/SecretOnce";
import { CreateAccountDialog } from "./CreateAccountDialog";

const columns: Column<MqttAccount>[] = [
  { key: "username", header: "Username", render: (a) => (
    <Link component={RouterLink} to={`/mqtt/accounts/${a.id}`}>{a.username}</Link>) },
  { key: "kind", header: "Kind", render: (a) => a.kind },
  { key: "status", header: "Status", render: (a) => <StatusChip status={a.isActive ? "active" : "disabled"} /> },
  { key: "rules", header: "ACL rules", hideBelow: "sm",
    render: (a) => a.rules.slice(0, 2).map((r) => `${r.access} ${r.topic}`).join(", ")
      + (a.rules.length > 2 ? ` and ${a.rules.length - 2} more` : "") || "none" },
  { key: "created", header: "Created", hideBelow: "md", render: (a) => new Date(a.createdAt).toLocaleDateString() },
];

type KindFilter = MqttAccountKind | "all";

/** The broker's logins: one per device (made at registration), and service and integration accounts made here. */
export default function MqttAccountsPage() {
  const [kind, setKind] = useState<KindFilter>("all");
  const [page, setPage] = useState(0);
  const [pageSize, setPageSize] = useState(25);
  const accounts = useMqttAccounts({ kind: kind === "all" ? undefined : kind, limit: pageSize,
    offset: page * pageSize });
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<MqttAccountWithPassword | null>(null);

  return (
    <>
      <PageHeader
        title="MQTT accounts"
        subtitle="Who may connect to the broker, and which topics each may read and write."
        actions={<Can action="mqtt.manage">
          <Button variant="contained" startIcon={<AddIcon />} onClick={() => setCreating(true)}>New account</Button>
        </Can>}
      />
      <ToggleButtonGroup exclusive size="small" value={kind} aria-label="Account kind" sx={{ mb: 2 }}
        onChange={(_e, v: KindFilter | null) => { if (v) { setKind(v); setPage(0); } }}>
        <ToggleButton value="all">All</ToggleButton>
        <ToggleButton value="service">Service</ToggleButton>
        <ToggleButton value="integration">Integration</ToggleButton>
        <ToggleButton value="device">Device</ToggleButton>
      </ToggleButtonGroup>
      <DataTable
        label="MQTT accounts"
        columns={columns}
        rows={accounts.data?.items}
        rowKey={(a) => a.id}
        loading={accounts.isPending}
        fetching={accounts.isFetching && !accounts.isPending}
        error={accounts.error}
        onRetry={() => void accounts.refetch()}
        empty={<EmptyState title={kind === "all" ? "No MQTT accounts" : `No ${kind} accounts`}>
          Devices get their account when they register; services and integrations get one here.
        </EmptyState>}
        paging={accounts.data && accounts.data.total > 0 ? {
          page, pageSize, total: accounts.data.total, onPageChange: setPage,
          onPageSizeChange: (n) => { setPageSize(n); setPage(0); },
        } : undefined}
      />
      {creating && (
        <CreateAccountDialog onClose={() => setCreating(false)}
          onCreated={(a) => { setCreating(false); if (a.password) setCreated(a); }} />
      )}
      {created?.password && (
        <SecretOnce title={`Account ${created.username} created`} label="Password" secret={created.password}
          onClose={() => setCreated(null)} />
      )}
    </>
  );
}
