import AddIcon from "@mui/icons-material/Add";
import DeleteIcon from "@mui/icons-material/Delete";
import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Card from "@mui/material/Card";
import CardContent from "@mui/material/CardContent";
import Grid from "@mui/material/Grid";
import MenuItem from "@mui/material/MenuItem";
import Stack from "@mui/material/Stack";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useMemo, useState, type FormEvent } from "react";
import { Link as RouterLink, useNavigate, useSearchParams } from "react-router-dom";

import { useCreateRelease, useFleets, useRelease } from "../../api/fleets";
import { errorAt, fieldErrors, unclaimed } from "../../api/fieldErrors";
import { usePermissions } from "../../auth/useAuth";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import {
  draftProblems, emptyDraft, fromRelease, newApp, newService, nextId, RESTART_POLICIES, SERVICE_STATES, servicePath,
  toDocument, type AppDraft, type ReleaseDraft, type ServiceDraft,
} from "./draft";

const SERVICE_FIELDS = ["serviceId", "serviceName", "state", "config.image", "config.command", "config.environment",
  "config.ports", "config.volumes", "config.restart"];

/** The fields each path is shown at: anything else the API reports is listed above the form. */
function claimedPaths(draft: ReleaseDraft): string[] {
  const paths = ["name", "fleet", "notes"];
  for (const app of draft.apps) {
    const base = `target.apps.${app.appId}`;
    paths.push(`${base}.appId`, `${base}.appName`);
    app.services.forEach((_s, i) => SERVICE_FIELDS.forEach((f) => paths.push(servicePath(app.appId, i, f))));
  }
  return paths;
}

/** Releases cannot change once made: "edit" starts a new release from an existing one (`?from=<id>`). */
export default function ReleaseEditor() {
  const [params] = useSearchParams();
  const from = params.get("from");
  const source = useRelease(from ? Number(from) : undefined);
  const { can } = usePermissions();

  if (!can("releases.create")) {
    return <EmptyState title="Operators and above create releases">Ask an admin for the operator role.</EmptyState>;
  }
  if (from && source.isPending) return <Loading label="Loading the release" />;
  if (from && source.error) return <ErrorAlert error={source.error} onRetry={() => void source.refetch()} />;
  const fleet = params.get("fleet");
  const initial = source.data ? { ...fromRelease(source.data), name: `${source.data.name} (copy)` }
    : emptyDraft(fleet ? Number(fleet) : "");
  return <EditorForm initial={initial} basedOn={source.data?.name} />;
}

function EditorForm({ initial, basedOn }: { initial: ReleaseDraft; basedOn?: string }) {
  const [draft, setDraft] = useState<ReleaseDraft>(initial);
  const [localProblems, setLocalProblems] = useState<string[]>([]);
  const fleets = useFleets();
  const create = useCreateRelease();
  const navigate = useNavigate();
  const errors = useMemo(() => fieldErrors(create.error), [create.error]);
  const leftover = create.error ? unclaimed(errors, claimedPaths(draft)) : [];

  const setApp = (index: number, app: AppDraft) =>
    setDraft((d) => ({ ...d, apps: d.apps.map((a, i) => (i === index ? app : a)) }));

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const problems = draftProblems(draft);
    setLocalProblems(problems);
    if (problems.length) return;
    create.mutate(
      { name: draft.name.trim(), fleet: draft.fleet === "" ? null : draft.fleet, notes: draft.notes.trim() || null,
        target: toDocument(draft) },
      { onSuccess: (release) => navigate(`/fleets/releases/${release.id}`) },
    );
  };

  return (
    <Box component="form" onSubmit={submit} noValidate aria-label="Release editor">
      <PageHeader
        title="New release"
        subtitle={basedOn ? `Starting from ${basedOn}. Releases never change once saved: this makes a new one.`
          : "A release is the apps and services devices should run; deploy it to a fleet or a tag afterwards."}
        actions={<>
          <Button component={RouterLink} to="/fleets">Cancel</Button>
          <Button type="submit" variant="contained" disabled={create.isPending}>
            {create.isPending ? "Saving…" : "Save release"}
          </Button>
        </>}
      />
      {localProblems.map((p) => <Alert key={p} severity="error" sx={{ mb: 2 }}>{p}</Alert>)}
      {create.error != null && (
        <Alert severity="error" role="alert" sx={{ mb: 2 }} data-testid="release-errors">
          The release was not saved: {Object.keys(errors.byPath).length > 0 && leftover.length === 0
            ? "see the fields marked below." : errors.message}
          {leftover.length > 0 && <ul style={{ margin: 0 }}>{leftover.map((m) => <li key={m}>{m}</li>)}</ul>}
        </Alert>
      )}
      <Card variant="outlined" sx={{ mb: 2 }}>
        <CardContent>
          <Grid container spacing={2}>
            <Grid size={{ xs: 12, md: 5 }}>
              <TextField label="Release name" required fullWidth value={draft.name}
                onChange={(e) => setDraft({ ...draft, name: e.target.value })}
                error={!!errorAt(errors, "name")} helperText={errorAt(errors, "name")} />
            </Grid>
            <Grid size={{ xs: 12, md: 3 }}>
              {/* Until the fleets are loaded (or if the release's fleet is gone) the select has no such option. */}
              <TextField select label="Fleet" fullWidth
                value={fleets.data?.some((f) => f.id === draft.fleet) ? draft.fleet : ""}
                onChange={(e) => setDraft({ ...draft, fleet: e.target.value === "" ? "" : Number(e.target.value) })}
                error={!!errorAt(errors, "fleet")}
                helperText={errorAt(errors, "fleet") ?? (fleets.error ? "Fleets could not be loaded" : "Optional")}>
                <MenuItem value="">No fleet</MenuItem>
                {(fleets.data ?? []).map((f) => <MenuItem key={f.id} value={f.id}>{f.name}</MenuItem>)}
              </TextField>
            </Grid>
            <Grid size={{ xs: 12, md: 4 }}>
              <TextField label="Notes" fullWidth multiline maxRows={4} value={draft.notes}
                onChange={(e) => setDraft({ ...draft, notes: e.target.value })}
                error={!!errorAt(errors, "notes")} helperText={errorAt(errors, "notes")} />
            </Grid>
          </Grid>
        </CardContent>
      </Card>
      <Stack spacing={2}>
        {draft.apps.map((app, i) => (
          <AppEditor key={i} app={app} errors={errors} onChange={(a) => setApp(i, a)}
            onRemove={draft.apps.length > 1
              ? () => setDraft((d) => ({ ...d, apps: d.apps.filter((_a, j) => j !== i) })) : undefined} />
        ))}
      </Stack>
      <Button startIcon={<AddIcon />} sx={{ mt: 2 }}
        onClick={() => setDraft((d) => ({ ...d, apps: [...d.apps, newApp(nextId(d.apps.map((a) => a.appId)))] }))}>
        Add app
      </Button>
    </Box>
  );
}

type Errors = ReturnType<typeof fieldErrors>;

function AppEditor({ app, errors, onChange, onRemove }: { app: AppDraft; errors: Errors;
  onChange: (a: AppDraft) => void; onRemove?: () => void }) {
  const base = `target.apps.${app.appId}`;
  const appLevel = [errors.byPath[`${base}.services`], errors.byPath[base]].filter(Boolean);
  const setService = (index: number, s: ServiceDraft) =>
    onChange({ ...app, services: app.services.map((x, i) => (i === index ? s : x)) });
  return (
    <Card variant="outlined" component="section" aria-label={`App ${app.appName || app.appId}`}>
      <CardContent>
        <Box sx={{ display: "flex", gap: 2, alignItems: "flex-start", flexWrap: "wrap" }}>
          <TextField label="App id" type="number" sx={{ width: 110 }} value={app.appId}
            onChange={(e) => onChange({ ...app, appId: Number(e.target.value) })}
            error={!!errorAt(errors, `${base}.appId`)} helperText={errorAt(errors, `${base}.appId`)} />
          <TextField label="App name" required sx={{ flex: "1 1 200px" }} value={app.appName}
            onChange={(e) => onChange({ ...app, appName: e.target.value })}
            error={!!errorAt(errors, `${base}.appName`)} helperText={errorAt(errors, `${base}.appName`)} />
          {onRemove && (
            <Button color="error" startIcon={<DeleteIcon />} onClick={onRemove}>Remove app</Button>
          )}
        </Box>
        {appLevel.map((m) => <Alert key={m} severity="error" sx={{ mt: 2 }}>{m}</Alert>)}
        <Stack spacing={2} sx={{ mt: 2 }}>
          {app.services.map((s, i) => (
            <ServiceEditor key={i} service={s} path={(f) => servicePath(app.appId, i, f)} errors={errors}
              onChange={(x) => setService(i, x)}
              onRemove={() => onChange({ ...app, services: app.services.filter((_x, j) => j !== i) })} />
          ))}
        </Stack>
        {app.services.length === 0 && <Typography color="text.secondary" sx={{ mt: 1 }}>No services.</Typography>}
        <Button startIcon={<AddIcon />} sx={{ mt: 1 }}
          onClick={() => onChange({ ...app,
            services: [...app.services, newService(nextId(app.services.map((s) => s.serviceId)))] })}>
          Add service
        </Button>
      </CardContent>
    </Card>
  );
}

function ServiceEditor({ service: s, path, errors, onChange, onRemove }: { service: ServiceDraft;
  path: (field: string) => string; errors: Errors; onChange: (s: ServiceDraft) => void; onRemove: () => void }) {
  const field = (name: string) => {
    const message = errorAt(errors, path(name));
    return { error: !!message, helperText: message };
  };
  const label = s.serviceName || `service ${s.serviceId}`;
  return (
    <Box component="fieldset" sx={{ border: 1, borderColor: "divider", borderRadius: 1, p: 2, m: 0 }}>
      <legend><Typography variant="subtitle2" component="span">Service {label}</Typography></legend>
      <Grid container spacing={2}>
        <Grid size={{ xs: 4, md: 1.5 }}>
          <TextField label="Service id" type="number" fullWidth value={s.serviceId}
            onChange={(e) => onChange({ ...s, serviceId: Number(e.target.value) })} {...field("serviceId")} />
        </Grid>
        <Grid size={{ xs: 8, md: 3 }}>
          <TextField label="Service name" required fullWidth value={s.serviceName}
            onChange={(e) => onChange({ ...s, serviceName: e.target.value })} {...field("serviceName")} />
        </Grid>
        <Grid size={{ xs: 12, md: 4.5 }}>
          <TextField label="Image" required fullWidth value={s.image} placeholder="registry/name:tag"
            onChange={(e) => onChange({ ...s, image: e.target.value })} {...field("config.image")} />
        </Grid>
        <Grid size={{ xs: 6, md: 1.5 }}>
          <TextField select label="State" fullWidth value={s.state}
            onChange={(e) => onChange({ ...s, state: e.target.value as ServiceDraft["state"] })} {...field("state")}>
            {SERVICE_STATES.map((v) => <MenuItem key={v} value={v}>{v}</MenuItem>)}
          </TextField>
        </Grid>
        <Grid size={{ xs: 6, md: 1.5 }}>
          <TextField select label="Restart" fullWidth value={s.restart}
            onChange={(e) => onChange({ ...s, restart: e.target.value as ServiceDraft["restart"] })}
            {...field("config.restart")}>
            {RESTART_POLICIES.map((v) => <MenuItem key={v} value={v}>{v}</MenuItem>)}
          </TextField>
        </Grid>
        <Grid size={{ xs: 12 }}>
          <TextField label="Command" fullWidth value={s.command}
            onChange={(e) => onChange({ ...s, command: e.target.value })}
            {...field("config.command")}
            helperText={field("config.command").helperText ?? 'Optional: a command line, or a JSON array such as ["serve", "--port", "80"]'} />
        </Grid>
        <Grid size={{ xs: 12, md: 4 }}>
          <TextField label="Environment" fullWidth multiline minRows={2} value={s.environment}
            onChange={(e) => onChange({ ...s, environment: e.target.value })} {...field("config.environment")}
            helperText={field("config.environment").helperText ?? "KEY=value, one a line"} />
        </Grid>
        <Grid size={{ xs: 12, md: 4 }}>
          <TextField label="Ports" fullWidth multiline minRows={2} value={s.ports}
            onChange={(e) => onChange({ ...s, ports: e.target.value })} {...field("config.ports")}
            helperText={field("config.ports").helperText ?? "[ip:]host:container[/tcp|udp], one a line"} />
        </Grid>
        <Grid size={{ xs: 12, md: 4 }}>
          <TextField label="Volumes" fullWidth multiline minRows={2} value={s.volumes}
            onChange={(e) => onChange({ ...s, volumes: e.target.value })} {...field("config.volumes")}
            helperText={field("config.volumes").helperText ?? "name:/path or /host/path:/path[:ro], one a line"} />
        </Grid>
      </Grid>
      <Button color="error" size="small" startIcon={<DeleteIcon />} onClick={onRemove} sx={{ mt: 1 }}>
        Remove service {label}
      </Button>
    </Box>
  );
}
