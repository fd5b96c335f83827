import Box from "@mui/material/Box";
import Paper from "@mui/material/Paper";
import Typography from "@mui/material/Typography";
import type { ReactNode } from "react";

/** The centred card the signed-out pages (login, first-run setup) share. */
export function AuthCard({ title, children }: { title: string; children: ReactNode }) {
  return (
    <Box component="main" sx={{ minHeight: "100vh", display: "grid", placeItems: "center", p: 2 }}>
      <Paper sx={{ p: { xs: 3, sm: 4 }, width: "100%", maxWidth: 420 }} elevation={3}>
        <Typography variant="overline" color="primary" component="p">Iotistic</Typography>
        <Typography variant="h5" component="h1" gutterBottom>{title}</Typography>
        {children}
      </Paper>
    </Box>
  );
}
