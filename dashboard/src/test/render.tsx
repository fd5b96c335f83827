import { ThemeProvider } from "@mui/material/styles";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter, Route, Routes, useLocation } from "react-router-dom";

import { tokens } from "../api/client";
import type { Role, User } from "../api/types";
import { AuthProvider } from "../auth/AuthContext";
import { theme } from "../theme";
import { json } from "./fetchMock";

export function testQueryClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity },
    mutations: { retry: false } } });
}

export function userFor(role: Role): User {
  return { id: 1, email: `${role}@example.com`, role, isActive: true, createdAt: "2025-01-01T00:00:00Z",
    lastLoginAt: null };
}

/** Routes that sign a test in as `role`: the AuthProvider restores the session through refresh + me, as after a
 *  page reload. Spread into mockApi's routes. */
export function signedInAs(role: Role) {
  tokens.set({ access_token: "test-access", refresh_token: "test-refresh", expires_in: 900 });
  return {
    "POST /api/v1/auth/refresh": () => json({ access_token: "test-access", refresh_token: "test-refresh",
      expires_in: 900 }),
    "GET /api/v1/auth/me": () => json(userFor(role)),
  };
}

function LocationProbe() {
  const loc = useLocation();
  return <div data-testid="location">{loc.pathname + loc.search}</div>;
}

/** Renders `element` at `path` (route pattern `pattern`) with the app's providers and a location probe. */
export function renderAt(element: ReactElement, { path = "/", pattern = "*", extraRoutes = [] }: { path?: string;
  pattern?: string; extraRoutes?: { path: string; element: ReactElement }[] } = {}) {
  const client = testQueryClient();
  const result = render(
    <ThemeProvider theme={theme}>
      <QueryClientProvider client={client}>
        <MemoryRouter initialEntries={[path]}>
          <AuthProvider>
            <Routes>
              <Route path={pattern} element={element} />
              {extraRoutes.map((r) => <Route key={r.path} path={r.path} element={r.element} />)}
            </Routes>
            <LocationProbe />
          </AuthProvider>
        </MemoryRouter>
      </QueryClientProvider>
    </ThemeProvider>,
  );
  return { ...result, client };
}
