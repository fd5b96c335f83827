import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import { useState, type FormEvent } from "react";
import { Navigate, useLocation, useNavigate } from "react-router-dom";

import { useSetupStatus } from "../../api/auth";
import { useAuth } from "../../auth/useAuth";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { AuthCard } from "./AuthCard";

export default function LoginPage() {
  const { status, login, notice } = useAuth();
  const navigate = useNavigate();
  const location = useLocation();
  const setup = useSetupStatus();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const from = (location.state as { from?: string } | null)?.from ?? "/devices";
  if (status === "restoring") return <Loading label="Restoring your session" />;
  if (status === "authenticated") return <Navigate to={from} replace />;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(email.trim(), password);
      navigate(from, { replace: true });
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <AuthCard title="Sign in">
      {notice && <Alert severity="info" sx={{ mb: 2 }}>{notice}</Alert>}
      {setup.data?.needed && (
        <Alert severity="warning" sx={{ mb: 2 }}>
          This instance has no owner yet. Open the one-time setup link that <code>iotistic up</code> printed.
        </Alert>
      )}
      <Stack component="form" spacing={2} onSubmit={submit} noValidate>
        <TextField label="Email" type="email" autoComplete="username" value={email} required autoFocus
          onChange={(e) => setEmail(e.target.value)} />
        <TextField label="Password" type="password" autoComplete="current-password" value={password} required
          onChange={(e) => setPassword(e.target.value)} />
        {error != null && <ErrorAlert error={error} />}
        <Button type="submit" variant="contained" size="large" disabled={busy || !email || !password}>
          {busy ? "Signing in…" : "Sign in"}
        </Button>
      </Stack>
    </AuthCard>
  );
}
