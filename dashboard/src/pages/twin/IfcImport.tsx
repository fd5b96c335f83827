import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import LinearProgress from "@mui/material/LinearProgress";
import TextField from "@mui/material/TextField";
import Typography from "@mui/material/Typography";
import { useMutation } from "@tanstack/react-query";
import { useRef, useState } from "react";

import { uploadIfc, useImportJob, type ImportJob } from "../../api/twin";
import { ErrorAlert } from "../../components/ErrorAlert";
import { StatusChip } from "../../components/StatusChip";
import { ImportReport } from "./ImportReport";

const PHASES: Record<string, string> = {
  parse: "Reading the file",
  snapshot: "Building the graph",
  apply: "Saving the graph",
  done: "Done",
};

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function Progress({ label, percent }: { label: string; percent: number }) {
  return (
    <Box sx={{ my: 2 }}>
      <Typography variant="body2">{label}: {Math.round(percent)}%</Typography>
      <LinearProgress variant="determinate" value={percent} aria-label={label} />
    </Box>
  );
}

function JobStatus({ initial }: { initial: ImportJob }) {
  const { data: job, error } = useImportJob(initial.id, initial);
  if (!job) return null;
  return (
    <Box aria-live="polite">
      <Box sx={{ display: "flex", gap: 1, alignItems: "center" }}>
        <Typography variant="body2">Import of {job.filename}</Typography>
        <StatusChip status={job.status} />
      </Box>
      {(job.status === "queued" || job.status === "running") && (
        <Progress label={PHASES[job.progress.phase] ?? "Importing"} percent={job.progress.percent} />
      )}
      {error && <ErrorAlert error={error} title="Could not follow the import" />}
      {job.status === "failed" && <ErrorAlert title="The import failed" error={job.error ?? "unknown error"} />}
      {job.status === "succeeded" && job.report && <ImportReport report={job.report} filename={job.filename} />}
    </Box>
  );
}

/** Upload an IFC file (with upload progress), then follow the import job to its report. */
export function IfcImport() {
  const input = useRef<HTMLInputElement>(null);
  const abort = useRef<AbortController | null>(null);
  const [file, setFile] = useState<File | null>(null);
  const [source, setSource] = useState("");
  const [sent, setSent] = useState(0);
  const send = useMutation({
    mutationFn: (f: File) => {
      abort.current = new AbortController();
      setSent(0);
      return uploadIfc(f, { source, onProgress: setSent, signal: abort.current.signal });
    },
  });
  const cancelled = send.error instanceof DOMException && send.error.name === "AbortError";

  return (
    <Box component="section" aria-label="IFC import">
      <Box component="form" sx={{ display: "flex", flexWrap: "wrap", gap: 2, alignItems: "center" }}
        onSubmit={(e) => {
          e.preventDefault();
          if (file) send.mutate(file);
        }}>
        <input ref={input} type="file" accept=".ifc" hidden aria-label="IFC file"
          onChange={(e) => {
            setFile(e.target.files?.[0] ?? null);
            send.reset();
          }} />
        <Button variant="outlined" onClick={() => input.current?.click()} disabled={send.isPending}>
          Choose IFC file
        </Button>
        <Typography variant="body2" sx={{ minWidth: 0, overflowWrap: "anywhere" }}>
          {file ? `${file.name} (${formatBytes(file.size)})` : "No file chosen"}
        </Typography>
        <TextField size="small" label="Import name (optional)" value={source}
          onChange={(e) => setSource(e.target.value)} slotProps={{ htmlInput: { maxLength: 128 } }}
          helperText="Importing again under the same name updates the building in place" />
        <Button type="submit" variant="contained" disabled={!file || send.isPending}>Upload</Button>
        {send.isPending && <Button onClick={() => abort.current?.abort()}>Cancel</Button>}
      </Box>
      {send.isPending && <Progress label="Uploading" percent={sent * 100} />}
      {send.isError && (cancelled
        ? <Typography role="status" sx={{ my: 1 }}>Upload cancelled.</Typography>
        : <ErrorAlert title="The upload was refused" error={send.error} />)}
      {send.data && <JobStatus key={send.data.id} initial={send.data} />}
    </Box>
  );
}
