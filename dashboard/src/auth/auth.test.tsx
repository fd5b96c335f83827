import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import { tokens } from "../api/client";
import { AppShell } from "../components/AppShell";
import LoginPage from "../pages/login/LoginPage";
import { json, mockApi } from "../test/fetchMock";
import { renderAt, signedInAs, userFor } from "../test/render";
import { Can } from "./Can";
import { RequireAuth } from "./RequireAuth";
import { can } from "./roles";

/** jsdom is a narrow screen: the navigation is a drawer behind the menu button, as on a tablet. */
async function openNavigation() {
  await userEvent.setup().click(await screen.findByRole("button", { name: "Open navigation" }));
}

const pair = { access_token: "a1", refresh_token: "r1", expires_in: 900 };

describe("roles", () => {
  it("matches the API's role checks", () => {
    expect(can("viewer", "devices.control")).toBe(false);
    expect(can("operator", "devices.control")).toBe(true);
    expect(can("operator", "users.manage")).toBe(false);
    expect(can("admin", "users.manage")).toBe(true);
    expect(can("admin", "license.install")).toBe(false);
    expect(can("owner", "license.install")).toBe(true);
    expect(can(null, "devices.deploy")).toBe(false);
  });
});

describe("login", () => {
  it("signs in, keeps the refresh token for reloads and goes where the user was headed", async () => {
    const { calls } = mockApi({
      "GET /api/v1/setup": () => json({ needed: false }),
      "POST /api/v1/auth/login": () => json(pair),
      "GET /api/v1/auth/me": () => json(userFor("operator")),
    });
    renderAt(<LoginPage />, { path: "/login", pattern: "/login",
      extraRoutes: [{ path: "/devices", element: <p>devices page</p> }] });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText(/email/i), "op@example.com");
    await user.type(screen.getByLabelText(/password/i), "secret-password");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByText("devices page")).toBeInTheDocument();
    expect(calls.find((c) => c.url.pathname === "/api/v1/auth/login")?.body)
      .toEqual({ email: "op@example.com", password: "secret-password" });
    expect(calls.find((c) => c.url.pathname === "/api/v1/auth/me")?.headers.authorization).toBe("Bearer a1");
    expect(sessionStorage.getItem("iotistic.refresh")).toBe("r1");
  });

  it("shows the API's message when the login is refused", async () => {
    mockApi({
      "GET /api/v1/setup": () => json({ needed: false }),
      "POST /api/v1/auth/login": () => json({ error: "unauthorized", message: "wrong email or password" }, 401),
    });
    renderAt(<LoginPage />, { path: "/login", pattern: "/login" });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText(/email/i), "x@example.com");
    await user.type(screen.getByLabelText(/password/i), "nope");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("wrong email or password");
    expect(tokens.accessToken).toBeNull();
  });

  it("points to the setup link on a fresh instance", async () => {
    mockApi({ "GET /api/v1/setup": () => json({ needed: true }) });
    renderAt(<LoginPage />, { path: "/login", pattern: "/login" });
    expect(await screen.findByText(/no owner yet/i)).toBeInTheDocument();
  });
});

describe("session", () => {
  it("sends a signed-out visitor to the login page", async () => {
    mockApi({});
    renderAt(<RequireAuth><p>secret</p></RequireAuth>, { path: "/devices",
      extraRoutes: [{ path: "/login", element: <p>login page</p> }] });
    expect(await screen.findByTestId("location")).toHaveTextContent("/login");
    expect(screen.queryByText("secret")).not.toBeInTheDocument();
  });

  it("restores the session after a reload from the refresh token", async () => {
    const { calls } = mockApi(signedInAs("viewer"));
    tokens.clear();
    sessionStorage.setItem("iotistic.refresh", "test-refresh");
    renderAt(<RequireAuth><p>secret</p></RequireAuth>, { path: "/devices" });
    expect(await screen.findByText("secret")).toBeInTheDocument();
    expect(calls[0]?.url.pathname).toBe("/api/v1/auth/refresh");
  });

  it("logs out: tells the API, forgets the tokens, shows the login page", async () => {
    const { calls } = mockApi({ ...signedInAs("admin"), "POST /api/v1/auth/logout": () => json(null, 204) });
    renderAt(<RequireAuth><AppShell /></RequireAuth>, { path: "/devices",
      extraRoutes: [{ path: "/login", element: <p>login page</p> }] });
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: /log out/i }));
    expect(await screen.findByText("login page")).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST" && c.url.pathname === "/api/v1/auth/logout")).toBe(true);
    expect(sessionStorage.getItem("iotistic.refresh")).toBeNull();
  });
});

describe("role-aware UI", () => {
  it("hides admin-only navigation and buttons from a viewer", async () => {
    mockApi(signedInAs("viewer"));
    renderAt(<RequireAuth><AppShell /></RequireAuth>, { path: "/devices" });
    await openNavigation();
    const nav = await screen.findByRole("navigation", { name: "Main" });
    expect(nav).toHaveTextContent("Devices");
    expect(nav).toHaveTextContent("Licence");
    expect(nav).not.toHaveTextContent("Users");
    expect(nav).not.toHaveTextContent("Audit log");
    expect(nav).not.toHaveTextContent("Provisioning keys");
  });

  it("shows every area to an admin", async () => {
    mockApi(signedInAs("admin"));
    renderAt(<RequireAuth><AppShell /></RequireAuth>, { path: "/devices" });
    await openNavigation();
    const nav = await screen.findByRole("navigation", { name: "Main" });
    for (const label of ["Devices", "Fleets & releases", "Provisioning keys", "MQTT", "Users", "Audit log",
      "Licence", "Digital twin", "Metrics"]) {
      expect(nav).toHaveTextContent(label);
    }
  });

  it("<Can> renders a control only for roles allowed to use it", async () => {
    mockApi(signedInAs("viewer"));
    const ui = <RequireAuth><p>page</p><Can action="devices.deploy"><button>Deploy</button></Can></RequireAuth>;
    const { unmount } = renderAt(ui);
    expect(await screen.findByText("page")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Deploy" })).not.toBeInTheDocument();
    unmount();
    mockApi(signedInAs("operator"));
    renderAt(ui);
    expect(await screen.findByRole("button", { name: "Deploy" })).toBeInTheDocument();
  });

  it("the session ending mid-use sends the user to sign in with a notice", async () => {
    mockApi(signedInAs("viewer"));
    renderAt(<RequireAuth><p>secret</p></RequireAuth>, { path: "/devices",
      extraRoutes: [{ path: "/login", element: <LoginPage /> }] });
    expect(await screen.findByText("secret")).toBeInTheDocument();
    mockApi({ "GET /api/v1/setup": () => json({ needed: false }) });
    tokens.expire();
    expect(await screen.findByText(/session has ended/i)).toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent("/login"));
  });
});

describe("navigation paths", () => {
  it("never use a prefix the API keeps for itself (a reload there would get the API, not the page)", async () => {
    const { NAV } = await import("../components/AppShell");
    // cloud/dashboard.py RESERVED_PREFIXES
    const reserved = ["/api", "/ws", "/metrics", "/docs", "/redoc", "/openapi.json", "/health", "/ready"];
    for (const { to } of NAV) {
      expect(reserved.filter((p) => to === p || to.startsWith(`${p}/`))).toEqual([]);
    }
  });
});
