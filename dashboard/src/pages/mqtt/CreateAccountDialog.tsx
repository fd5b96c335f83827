import AddIcon from "@mui/icons-material/Add";
import DeleteIcon from "@mui/icons-material/Delete";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import FormControlLabel from "@mui/material/FormControlLabel";
import IconButton from "@mui/material/IconButton";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import Switch from "@mui/material/Switch";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useId, useMemo, useState, type FormEvent } from "react";

import { errorAt, fieldErrors, unclaimed } from "../../api/fieldErrors";
import { useCreateMqttAccount, type MqttAccess, type MqttAccountWithPassword } from "../../api/mqtt";
import { ErrorAlert } from "../../components/ErrorAlert";
import { ACCESS } from "./RuleForm";

interface RuleDraft {
  topic: string;
  access: MqttAccess;
}

// Refusals that come without field details, placed at the field they are about.
const CODES = { weak_password: "password", invalid_password: "password", conflict: "username" };

export function CreateAccountDialog({ onClose, onCreated }: { onClose: () => void;
  onCreated: (a: MqttAccountWithPassword) => void }) {
  const titleId = useId();
  const create = useCreateMqttAccount();
  const [username, setUsername] = useState("");
  const [kind, setKind] = useState<"service" | "integration">("service");
  const [generate, setGenerate] = useState(true);
  const [password, setPassword] = useState("");
  const [rules, setRules] = useState<RuleDraft[]>([{ topic: "", access: "read" }]);
  // Which form row each sent rule came from: blank rows are not sent, so the API's indexes can differ.
  const [sentRows, setSentRows] = useState<number[]>([]);
  const errors = useMemo(() => fieldErrors(create.error, CODES), [create.error]);
  const rulePath = (row: number) => `rules.${sentRows.indexOf(row)}`;
  const claimed = ["username", "kind", "password", ...sentRows.map((_r, i) => `rules.${i}`)];
  const leftover = create.error ? unclaimed(errors, claimed) : [];
  const field = (path: string, hint?: string) => {
    const message = errorAt(errors, path);
    return { error: !!message, helperText: message ?? hint };
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const rows = rules.map((_r, i) => i).filter((i) => rules[i]?.topic.trim());
    setSentRows(rows);
    create.mutate({
      username: username.trim(), kind,
      ...(generate ? {} : { password }),
      rules: rows.map((i) => ({ topic: rules[i]?.topic.trim() ?? "", access: rules[i]?.access ?? "read" })),
    }, { onSuccess: onCreated });
  };

  return (
    <Dialog open onClose={create.isPending ? undefined : onClose} aria-labelledby={titleId} fullWidth maxWidth="md">
      <form onSubmit={submit} noValidate>
        <DialogTitle id={titleId}>New MQTT account</DialogTitle>
        <DialogContent>
          <Stack spacing={2} sx={{ mt: 1 }}>
            <Box sx={{ display: "flex", gap: 2, flexWrap: "wrap" }}>
              <TextField label="Username" required autoFocus sx={{ flex: "2 1 240px" }} value={username}
                onChange={(e) => setUsername(e.target.value)}
                {...field("username", "Letters, digits and . _ @ - (starting with a letter or digit)")} />
              <TextField select label="Kind" sx={{ flex: "1 1 160px" }} value={kind}
                onChange={(e) => setKind(e.target.value as "service" | "integration")} {...field("kind")}>
                <MenuItem value="service">service</MenuItem>
                <MenuItem value="integration">integration</MenuItem>
              </TextField>
            </Box>
            <FormControlLabel label="Generate a password (shown once)"
              control={<Switch checked={generate} onChange={(e) => setGenerate(e.target.checked)} />} />
            {!generate && (
              <TextField label="Password" type="password" autoComplete="new-password" value={password}
                onChange={(e) => setPassword(e.target.value)} {...field("password", "At least 16 characters")} />
            )}
            <Typography variant="subtitle2" component="h3">ACL rules</Typography>
            {rules.map((r, i) => (
              <Box key={i} sx={{ display: "flex", gap: 1, alignItems: "flex-start" }}>
                <TextField label={`Rule ${i + 1} topic`} sx={{ flex: 1 }} value={r.topic} placeholder="sensors/+/temperature"
                  onChange={(e) => setRules(rules.map((x, j) => (j === i ? { ...x, topic: e.target.value } : x)))}
                  {...field(rulePath(i), "+ and # wildcards; %u and %c stand for the username and client id")} />
                <TextField select label={`Rule ${i + 1} access`} sx={{ width: 150 }} value={r.access}
                  onChange={(e) => setRules(rules.map((x, j) => (j === i ? { ...x, access: e.target.value as MqttAccess }
                    : x)))}>
                  {ACCESS.map((a) => <MenuItem key={a} value={a}>{a}</MenuItem>)}
                </TextField>
                <IconButton aria-label={`Remove rule ${i + 1}`} sx={{ mt: 1 }}
                  onClick={() => setRules(rules.filter((_x, j) => j !== i))}><DeleteIcon /></IconButton>
              </Box>
            ))}
            <Box>
              <Button startIcon={<AddIcon />} onClick={() => setRules([...rules, { topic: "", access: "read" }])}>
                Add rule
              </Button>
            </Box>
          </Stack>
          {create.error != null && (leftover.length > 0 || Object.keys(errors.byPath).length === 0) && (
            <ErrorAlert error={create.error} />
          )}
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose} disabled={create.isPending}>Cancel</Button>
          <Button type="submit" variant="contained" disabled={create.isPending}>Create account</Button>
        </DialogActions>
      </form>
    </Dialog>
  );
}
