import AccountTreeIcon from "@mui/icons-material/AccountTree";
import ApartmentIcon from "@mui/icons-material/Apartment";
import DevicesIcon from "@mui/icons-material/Devices";
import HistoryIcon from "@mui/icons-material/History";
import KeyIcon from "@mui/icons-material/VpnKey";
import LogoutIcon from "@mui/icons-material/Logout";
import MenuIcon from "@mui/icons-material/Menu";
import PeopleIcon from "@mui/icons-material/People";
import RouterIcon from "@mui/icons-material/Router";
import ShowChartIcon from "@mui/icons-material/ShowChart";
import VerifiedIcon from "@mui/icons-material/Verified";
import AppBar from "@mui/material/AppBar";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Drawer from "@mui/material/Drawer";
import IconButton from "@mui/material/IconButton";
import List from "@mui/material/List";
import ListItemButton from "@mui/material/ListItemButton";
import ListItemIcon from "@mui/material/ListItemIcon";
import ListItemText from "@mui/material/ListItemText";
import Toolbar from "@mui/material/Toolbar";
import Typography from "@mui/material/Typography";
import useMediaQuery from "@mui/material/useMediaQuery";
import { useTheme } from "@mui/material/styles";
import { Suspense, useState, type ReactNode } from "react";
import { NavLink, Outlet, useLocation } from "react-router-dom";

import type { Role } from "../api/types";
import { atLeast } from "../auth/roles";
import { useAuth } from "../auth/useAuth";
import { ErrorBoundary } from "./ErrorBoundary";
import { Loading } from "./Loading";

const DRAWER_WIDTH = 232;

export interface NavEntry {
  to: string;
  label: string;
  icon: ReactNode;
  /** Least role whose API calls for this page succeed; the entry is hidden below it. */
  role?: Role;
}

export const NAV: NavEntry[] = [
  { to: "/devices", label: "Devices", icon: <DevicesIcon /> },
  { to: "/fleets", label: "Fleets & releases", icon: <AccountTreeIcon /> },
  { to: "/telemetry", label: "Metrics", icon: <ShowChartIcon /> },
  { to: "/twin", label: "Digital twin", icon: <ApartmentIcon /> },
  { to: "/provisioning-keys", label: "Provisioning keys", icon: <KeyIcon />, role: "admin" },
  { to: "/mqtt", label: "MQTT", icon: <RouterIcon /> },
  { to: "/users", label: "Users", icon: <PeopleIcon />, role: "admin" },
  { to: "/audit", label: "Audit log", icon: <HistoryIcon />, role: "admin" },
  { to: "/licence", label: "Licence", icon: <VerifiedIcon /> },
];

function Navigation({ onNavigate }: { onNavigate?: () => void }) {
  const { user } = useAuth();
  return (
    <nav aria-label="Main">
      <List>
        {NAV.filter((e) => !e.role || atLeast(user?.role, e.role)).map((e) => (
          <ListItemButton
            key={e.to}
            component={NavLink}
            to={e.to}
            onClick={onNavigate}
            sx={{ "&.active": { bgcolor: "action.selected", fontWeight: 600 } }}
          >
            <ListItemIcon sx={{ minWidth: 40 }}>{e.icon}</ListItemIcon>
            <ListItemText primary={e.label} />
          </ListItemButton>
        ))}
      </List>
    </nav>
  );
}

/** The frame of every signed-in page: app bar with the user and logout, navigation (a permanent drawer on a
 *  laptop, a temporary one on a tablet), and the routed page with its own loading and error boundary. */
export function AppShell() {
  const theme = useTheme();
  const wide = useMediaQuery(theme.breakpoints.up("lg"));
  const [open, setOpen] = useState(false);
  const { user, logout } = useAuth();
  const location = useLocation();

  return (
    <Box sx={{ display: "flex", minHeight: "100vh" }}>
      <a href="#main" className="skip-link">Skip to content</a>
      <AppBar position="fixed" sx={{ zIndex: (t) => t.zIndex.drawer + 1 }}>
        <Toolbar>
          {!wide && (
            <IconButton color="inherit" edge="start" aria-label="Open navigation" onClick={() => setOpen(true)}
              sx={{ mr: 1 }}>
              <MenuIcon />
            </IconButton>
          )}
          <Typography variant="h6" component="div" sx={{ flexGrow: 1 }}>Iotistic</Typography>
          {user && (
            <Typography variant="body2" sx={{ mr: 2, display: { xs: "none", sm: "block" } }}
              data-testid="current-user">
              {user.email} · {user.role}
            </Typography>
          )}
          <Button color="inherit" startIcon={<LogoutIcon />} onClick={() => void logout()}>Log out</Button>
        </Toolbar>
      </AppBar>
      <Drawer
        variant={wide ? "permanent" : "temporary"}
        open={wide || open}
        onClose={() => setOpen(false)}
        sx={{ width: wide ? DRAWER_WIDTH : undefined, flexShrink: 0,
          "& .MuiDrawer-paper": { width: DRAWER_WIDTH, boxSizing: "border-box" } }}
      >
        <Toolbar />
        <Navigation onNavigate={wide ? undefined : () => setOpen(false)} />
      </Drawer>
      <Box component="main" id="main" tabIndex={-1} sx={{ flexGrow: 1, minWidth: 0, p: { xs: 2, md: 3 } }}>
        <Toolbar />
        <ErrorBoundary key={location.pathname}>
          <Suspense fallback={<Loading label="Loading page" />}>
            <Outlet />
          </Suspense>
        </ErrorBoundary>
      </Box>
    </Box>
  );
}
