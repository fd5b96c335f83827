import Box from "@mui/material/Box";
import CircularProgress from "@mui/material/CircularProgress";
import Typography from "@mui/material/Typography";

/** A labelled spinner: screen readers hear what is loading, not just "busy". */
export function Loading({ label = "Loading" }: { label?: string }) {
  return (
    <Box role="status" aria-live="polite" sx={{ display: "flex", alignItems: "center", gap: 2, p: 3 }}>
      <CircularProgress size={24} aria-hidden />
      <Typography color="text.secondary">{label}…</Typography>
    </Box>
  );
}
