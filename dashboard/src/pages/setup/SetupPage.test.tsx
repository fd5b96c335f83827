import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import { json, mockApi } from "../../test/fetchMock";
import { renderAt, userFor } from "../../test/render";
import SetupPage, { setupToken } from "./SetupPage";

const devices = { path: "/devices", element: <p>devices page</p> };

describe("first-run setup", () => {
  it("reads the token from the link's fragment or query", () => {
    expect(setupToken("#token=abc", "")).toBe("abc");
    expect(setupToken("", "?token=xyz")).toBe("xyz");
    expect(setupToken("", "")).toBe("");
  });

  it("creates the owner with the link's token and signs them in", async () => {
    const { calls } = mockApi({
      "GET /api/v1/setup": () => json({ needed: true }),
      "POST /api/v1/setup": () => json({ access_token: "a", refresh_token: "r", expires_in: 900 }, 201),
      "GET /api/v1/auth/me": () => json(userFor("owner")),
    });
    renderAt(<SetupPage />, { path: "/setup#token=tok123", pattern: "/setup", extraRoutes: [devices] });
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText(/email/i), "owner@example.com");
    await user.type(screen.getByLabelText(/^password/i), "long-enough-pw");
    await user.type(screen.getByLabelText(/confirm password/i), "long-enough-pw");
    await user.click(screen.getByRole("button", { name: "Create owner" }));
    expect(await screen.findByText("devices page")).toBeInTheDocument();
    expect(calls.find((c) => c.method === "POST")?.body)
      .toEqual({ token: "tok123", email: "owner@example.com", password: "long-enough-pw" });
  });

  it("checks the password before asking the API", async () => {
    const { calls } = mockApi({ "GET /api/v1/setup": () => json({ needed: true }) });
    renderAt(<SetupPage />, { path: "/setup#token=t", pattern: "/setup" });
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText(/email/i), "o@example.com");
    await user.type(screen.getByLabelText(/^password/i), "short");
    await user.type(screen.getByLabelText(/confirm password/i), "other");
    await user.click(screen.getByRole("button", { name: "Create owner" }));
    expect(screen.getByText("The passwords differ")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST")).toHaveLength(0);
  });

  it("shows the API's refusal (a used link)", async () => {
    mockApi({
      "GET /api/v1/setup": () => json({ needed: true }),
      "POST /api/v1/setup": () => json({ error: "gone", message: "this setup link was already used" }, 410),
    });
    renderAt(<SetupPage />, { path: "/setup#token=t", pattern: "/setup" });
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText(/email/i), "o@example.com");
    await user.type(screen.getByLabelText(/^password/i), "long-enough-pw");
    await user.type(screen.getByLabelText(/confirm password/i), "long-enough-pw");
    await user.click(screen.getByRole("button", { name: "Create owner" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("this setup link was already used");
  });

  it("says so when the instance is set up already, and without a token asks for the link", async () => {
    mockApi({ "GET /api/v1/setup": () => json({ needed: false }) });
    const { unmount } = renderAt(<SetupPage />, { path: "/setup#token=t", pattern: "/setup" });
    expect(await screen.findByText(/already has its owner/i)).toBeInTheDocument();
    unmount();
    mockApi({ "GET /api/v1/setup": () => json({ needed: true }) });
    renderAt(<SetupPage />, { path: "/setup", pattern: "/setup" });
    expect(await screen.findByText(/needs the one-time setup link/i)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Create owner" })).not.toBeInTheDocument();
  });
});
