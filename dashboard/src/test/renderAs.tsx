import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import { Suspense, type ReactElement } from "react";
import { MemoryRouter, Route, Routes, useLocation } from "react-router-dom";

import type { Role, User } from "../api/types";
import { AuthContext, type AuthState } from "../auth/AuthContext";

export function userWith(role: Role, id = 1): User {
  return { id, email: `${role}@example.com`, role, isActive: true, createdAt: "2026-01-01T00:00:00Z",
    lastLoginAt: null };
}

/** Where the page navigated to, for tests that follow a redirect. */
function LocationProbe() {
  const location = useLocation();
  return <output data-testid="location">{location.pathname + location.search}</output>;
}

/** A page as a signed-in user of `role` sees it, at `url` matched by the route `path`, with a fresh query cache
 *  (no retries, so an error shows at once). The API is whatever the test's mockApi answers. */
export function renderAs(role: Role, ui: ReactElement, { url = "/", path = "*", userId = 1 }: { url?: string;
  path?: string; userId?: number } = {}) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: 0 },
    mutations: { retry: false } } });
  // Only what pages read; the session's actions are the auth context's own tests' concern.
  const auth = { status: "authenticated", user: userWith(role, userId), notice: null,
    login: async () => undefined, logout: async () => undefined } satisfies Partial<AuthState> as unknown as AuthState;
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter initialEntries={[url]}>
        <AuthContext.Provider value={auth}>
          {/* The shell gives routed pages this boundary in the app: lazy pages suspend under it. */}
          <Suspense fallback={<p>Loading page</p>}>
            <Routes>
              <Route path={path} element={ui} />
            </Routes>
          </Suspense>
          <LocationProbe />
        </AuthContext.Provider>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}
