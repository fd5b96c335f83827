import CssBaseline from "@mui/material/CssBaseline";
import { ThemeProvider } from "@mui/material/styles";
import { QueryClientProvider, type QueryClient } from "@tanstack/react-query";
import { lazy, Suspense, useState } from "react";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";

import { AuthProvider } from "./auth/AuthContext";
import { RequireAuth } from "./auth/RequireAuth";
import { AppShell } from "./components/AppShell";
import { Loading } from "./components/Loading";
import { makeQueryClient } from "./queryClient";
import { theme } from "./theme";

// Every page is its own chunk so the first load carries only the shell.
const LoginPage = lazy(() => import("./pages/login/LoginPage"));
const SetupPage = lazy(() => import("./pages/setup/SetupPage"));
const DevicesPage = lazy(() => import("./pages/devices/DevicesPage"));
const DevicePage = lazy(() => import("./pages/devices/DevicePage"));
const FleetsArea = lazy(() => import("./pages/fleets"));
const MetricsPage = lazy(() => import("./pages/metrics/MetricsPage"));
const TwinPage = lazy(() => import("./pages/twin/TwinPage"));
const ProvisioningKeysPage = lazy(() => import("./pages/provisioning/ProvisioningKeysPage"));
const MqttArea = lazy(() => import("./pages/mqtt"));
const UsersPage = lazy(() => import("./pages/users/UsersPage"));
const AuditPage = lazy(() => import("./pages/audit/AuditPage"));
const LicencePage = lazy(() => import("./pages/licence/LicencePage"));

export function AppRoutes() {
  return (
    <Suspense fallback={<Loading label="Loading page" />}>
      <Routes>
        <Route path="/login" element={<LoginPage />} />
        <Route path="/setup" element={<SetupPage />} />
        <Route element={<RequireAuth><AppShell /></RequireAuth>}>
          <Route index element={<Navigate to="/devices" replace />} />
          <Route path="/devices" element={<DevicesPage />} />
          <Route path="/devices/:uuid" element={<DevicePage />} />
          <Route path="/fleets/*" element={<FleetsArea />} />
          {/* Not /metrics: the API serves Prometheus metrics there (cloud/dashboard.py RESERVED_PREFIXES). */}
          <Route path="/telemetry" element={<MetricsPage />} />
          <Route path="/twin" element={<TwinPage />} />
          <Route path="/provisioning-keys/*" element={<ProvisioningKeysPage />} />
          <Route path="/mqtt/*" element={<MqttArea />} />
          <Route path="/users/*" element={<UsersPage />} />
          <Route path="/audit/*" element={<AuditPage />} />
          <Route path="/licence/*" element={<LicencePage />} />
          <Route path="*" element={<Navigate to="/devices" replace />} />
        </Route>
      </Routes>
    </Suspense>
  );
}

export function App({ queryClient }: { queryClient?: QueryClient }) {
  const [client] = useState(() => queryClient ?? makeQueryClient());
  return (
    <ThemeProvider theme={theme}>
      <CssBaseline />
      <QueryClientProvider client={client}>
        <BrowserRouter>
          <AuthProvider>
            <AppRoutes />
          </AuthProvider>
        </BrowserRouter>
      </QueryClientProvider>
    </ThemeProvider>
  );
}
