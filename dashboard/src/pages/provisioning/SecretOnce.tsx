import ContentCopyIcon from "@mui/icons-material/ContentCopy";
import Alert from "@mui/material/Alert";
import Button from "@mui/material/Button";
import Dialog from "@mui/material/Dialog";
import DialogActions from "@mui/material/DialogActions";
import DialogContent from "@mui/material/DialogContent";
import DialogTitle from "@mui/material/DialogTitle";
import TextField from "@mui/material/TextField";
import { useId, useRef, useState, type ReactNode } from "react";

/** A secret the API returns exactly once (a provisioning key, an MQTT password): shown with a copy button and a
 *  warning, gone for good when the dialog closes. */
export function SecretOnce({ title, label, secret, children, onClose }: { title: string; label: string;
  secret: string; children?: ReactNode; onClose: () => void }) {
  const titleId = useId();
  const field = useRef<HTMLInputElement>(null);
  const [copied, setCopied] = useState<"yes" | "no" | null>(null);

  const copy = async () => {
    try {
      // Only in a secure context (https or localhost); elsewhere the text is selected for Ctrl+C instead.
      await navigator.clipboard.writeText(secret);
      setCopied("yes");
    } catch {
      field.current?.select();
      setCopied("no");
    }
  };

  return (
    <Dialog open onClose={onClose} aria-labelledby={titleId} fullWidth maxWidth="sm">
      <DialogTitle id={titleId}>{title}</DialogTitle>
      <DialogContent>
        <Alert severity="warning" sx={{ mb: 2 }}>
          This is the only time the {label.toLowerCase()} is shown. Copy it now and keep it somewhere safe.
        </Alert>
        {children}
        <TextField label={label} value={secret} fullWidth inputRef={field}
          slotProps={{ htmlInput: { readOnly: true, spellCheck: false, style: { fontFamily: "monospace" } } }}
          onFocus={(e) => e.target.select()} />
        <Button startIcon={<ContentCopyIcon />} onClick={() => void copy()} sx={{ mt: 1 }}>Copy</Button>
        {copied === "yes" && <Alert severity="success" sx={{ mt: 1 }} role="status">Copied to the clipboard.</Alert>}
        {copied === "no" && (
          <Alert severity="info" sx={{ mt: 1 }} role="status">
            The browser refused the clipboard; the text is selected: press Ctrl+C (⌘C) to copy it.
          </Alert>
        )}
      </DialogContent>
      <DialogActions>
        <Button variant="contained" onClick={onClose}>I have copied it</Button>
      </DialogActions>
    </Dialog>
  );
}
