import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Link from "@mui/material/Link";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useMemo, useState, type FormEvent } from "react";
import { Link as RouterLink, Navigate, useLocation, useNavigate } from "react-router-dom";

import { useCreateOwner, useSetupStatus } from "../../api/auth";
import { useAuth } from "../../auth/useAuth";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { AuthCard } from "../login/AuthCard";

// The API refuses shorter passwords (services/users.py MIN_PASSWORD_LENGTH); checking here saves a round trip.
const MIN_PASSWORD = 10;

/** The token from the one-time link: in the fragment (never sent to servers or logged) or the query string. */
export function setupToken(hash: string, search: string): string {
  const fromHash = new URLSearchParams(hash.replace(/^#/, "")).get("token");
  return fromHash ?? new URLSearchParams(search).get("token") ?? "";
}

export default function SetupPage() {
  const location = useLocation();
  const navigate = useNavigate();
  const { status: authStatus, adopt } = useAuth();
  const status = useSetupStatus();
  const create = useCreateOwner();
  const token = useMemo(() => setupToken(location.hash, location.search), [location.hash, location.search]);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [confirm, setConfirm] = useState("");
  const [touched, setTouched] = useState(false);

  if (authStatus === "authenticated" && !create.isSuccess) return <Navigate to="/devices" replace />;
  if (status.isPending) return <Loading label="Checking this instance" />;
  if (status.isError) {
    return (
      <AuthCard title="First-run setup">
        <ErrorAlert error={status.error} onRetry={() => void status.refetch()} />
      </AuthCard>
    );
  }
  if (!status.data.needed && !create.isSuccess) {
    return (
      <AuthCard title="Already set up">
        <Typography sx={{ mb: 2 }}>This instance already has its owner. Sign in instead.</Typography>
        <Link component={RouterLink} to="/login">Go to sign in</Link>
      </AuthCard>
    );
  }

  const tooShort = password.length < MIN_PASSWORD;
  const mismatch = password !== confirm;
  const noEmail = !email.trim();
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTouched(true);
    if (tooShort || mismatch || noEmail) return;
    try {
      const pair = await create.mutateAsync({ token, email: email.trim(), password });
      await adopt(pair);
      navigate("/devices", { replace: true });
    } catch {
      // create.error (or the sign-in that follows) is shown below
    }
  };

  return (
    <AuthCard title="Create the owner">
      {!token ? (
        <Alert severity="warning">
          This page needs the one-time setup link that <code>iotistic up</code> printed (it carries a token).
        </Alert>
      ) : (
        <Stack component="form" spacing={2} onSubmit={submit} noValidate aria-label="Create the owner">
          <Typography color="text.secondary">
            The owner can do everything, including adding other users. This link works once.
          </Typography>
          <TextField label="Email" type="email" autoComplete="username" value={email} required autoFocus
            onChange={(e) => setEmail(e.target.value)} error={touched && noEmail}
            helperText={touched && noEmail ? "Enter the owner's email" : " "} />
          <TextField label="Password" type="password" autoComplete="new-password" value={password} required
            onChange={(e) => setPassword(e.target.value)} error={touched && tooShort}
            helperText={`At least ${MIN_PASSWORD} characters`} />
          <TextField label="Confirm password" type="password" autoComplete="new-password" value={confirm} required
            onChange={(e) => setConfirm(e.target.value)} error={touched && mismatch}
            helperText={touched && mismatch ? "The passwords differ" : " "} />
          {create.isError && <ErrorAlert error={create.error} />}
          <Button type="submit" variant="contained" size="large" disabled={create.isPending}>
            {create.isPending ? "Creating…" : "Create owner"}
          </Button>
        </Stack>
      )}
    </AuthCard>
  );
}
