import Box from "@mui/material/Box";
import Typography from "@mui/material/Typography";
import type { ReactNode } from "react";

/** The page's one h1 and its actions, wrapping under each other on narrow screens. */
export function PageHeader({ title, subtitle, actions }: { title: ReactNode; subtitle?: ReactNode;
  actions?: ReactNode }) {
  return (
    <Box sx={{ display: "flex", flexWrap: "wrap", alignItems: "center", gap: 2, mb: 2 }}>
      <Box sx={{ flex: "1 1 auto", minWidth: 0 }}>
        <Typography variant="h5" component="h1" sx={{ overflowWrap: "anywhere" }}>{title}</Typography>
        {subtitle && <Typography color="text.secondary" component="div">{subtitle}</Typography>}
      </Box>
      {actions && <Box sx={{ display: "flex", gap: 1, flexWrap: "wrap" }}>{actions}</Box>}
    </Box>
  );
}
