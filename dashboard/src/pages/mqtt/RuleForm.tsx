import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import MenuItem from "@mui/material/MenuItem";
import TextField from "@mui/material/TextField";
import { useMemo, useState, type FormEvent } from "react";

import { errorAt, fieldErrors } from "../../api/fieldErrors";
import { useAddMqttRule, type MqttAccess } from "../../api/mqtt";
import { ErrorAlert } from "../../components/ErrorAlert";

export const ACCESS: MqttAccess[] = ["read", "write", "readwrite"];

/** Adds one ACL rule; the API judges the topic filter and its message shows under the field. */
export function RuleForm({ accountId }: { accountId: number }) {
  const add = useAddMqttRule(accountId);
  const [topic, setTopic] = useState("");
  const [access, setAccess] = useState<MqttAccess>("read");
  const errors = useMemo(() => fieldErrors(add.error), [add.error]);
  const topicError = errorAt(errors, "topic");

  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate({ topic: topic.trim(), access }, { onSuccess: () => setTopic("") });
  };
  return (
    <Box component="form" onSubmit={submit} noValidate aria-label="Add ACL rule">
      <Box sx={{ display: "flex", gap: 1, alignItems: "flex-start", flexWrap: "wrap" }}>
        <TextField label="Topic filter" sx={{ flex: "1 1 260px" }} value={topic} placeholder="sensors/+/temperature"
          onChange={(e) => setTopic(e.target.value)} error={!!topicError}
          helperText={topicError ?? "+ and # wildcards; %u and %c stand for the username and client id"} />
        <TextField select label="Access" sx={{ width: 150 }} value={access}
          onChange={(e) => setAccess(e.target.value as MqttAccess)}>
          {ACCESS.map((a) => <MenuItem key={a} value={a}>{a}</MenuItem>)}
        </TextField>
        <Button type="submit" variant="contained" disabled={add.isPending} sx={{ mt: 1 }}>Add rule</Button>
      </Box>
      {add.error != null && !topicError && <ErrorAlert error={add.error} />}
    </Box>
  );
}
