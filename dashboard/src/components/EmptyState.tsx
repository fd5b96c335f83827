import Box from "@mui/material/Box";
import Typography from "@mui/material/Typography";
import type { ReactNode } from "react";

export function EmptyState({ title, children, action }: { title: string; children?: ReactNode; action?: ReactNode }) {
  return (
    <Box sx={{ textAlign: "center", py: 6, px: 2 }} data-testid="empty-state">
      <Typography variant="h6" component="p" gutterBottom>{title}</Typography>
      {children && <Typography color="text.secondary" component="div">{children}</Typography>}
      {action && <Box sx={{ mt: 2 }}>{action}</Box>}
    </Box>
  );
}
