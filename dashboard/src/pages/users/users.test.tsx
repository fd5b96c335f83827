import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import type { Role, User } from "../../api/types";
import { RequireAuth } from "../../auth/RequireAuth";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import UsersPage from "./UsersPage";

configure({ asyncUtilTimeout: 5000 });
// Forms of MUI fields typed into key by key in jsdom, on a shared CI machine: seconds per test.
vi.setConfig({ testTimeout: 20_000 });

type Routes = Parameters<typeof mockApi>[0];

// signedInAs makes the signed-in user id 1.
const person = (id: number, email: string, role: Role, extra: Partial<User> = {}): User => ({ id, email, role,
  isActive: true, createdAt: "2026-01-01T00:00:00Z", lastLoginAt: null, ...extra });

function open(role: Role, routes: Routes) {
  const api = mockApi({ ...signedInAs(role), ...routes });
  renderAt(<RequireAuth><UsersPage /></RequireAuth>);
  return api;
}

const patches = (calls: Call[]) => calls.filter((c) => c.method === "PATCH").map((c) => [c.url.pathname, c.body]);

/** The table row whose email cell is `email` (with " (you)" on one's own). */
function row(email: string): HTMLElement {
  const rows = within(screen.getByRole("table", { name: "Users" })).getAllByRole("row") as HTMLTableRowElement[];
  const found = rows.find((r) => r.cells[0]?.textContent?.replace(" (you)", "") === email);
  if (!found) throw new Error(`no row for ${email}`);
  return found;
}

describe("users", () => {
  it("lets an owner change a role after confirmation and shows the last-owner refusal", async () => {
    const user = userEvent.setup();
    let list = [person(1, "owner@example.com", "owner"), person(2, "ops@example.com", "operator")];
    const { calls } = open("owner", {
      "GET /api/v1/users": () => json(list),
      "PATCH /api/v1/users/2": (c) => {
        list = list.map((u) => (u.id === 2 ? { ...u, ...(c.body as Partial<User>) } : u));
        return json(list[1]);
      },
      "PATCH /api/v1/users/1": () => json({ error: "conflict", message: "the last owner cannot be demoted or disabled" },
        409),
    });
    await screen.findByRole("table", { name: "Users" });
    expect(row("owner@example.com")).toHaveTextContent("(you)");
    // No one removes themselves; others can be.
    expect(within(row("owner@example.com")).queryByRole("button", { name: /Remove/ })).not.toBeInTheDocument();
    expect(within(row("ops@example.com")).getByRole("button", { name: "Remove ops@example.com" })).toBeInTheDocument();

    await user.click(within(row("ops@example.com")).getByRole("combobox", { name: "Role of ops@example.com" }));
    await user.click(await screen.findByRole("option", { name: "admin" }));
    const dialog = await screen.findByRole("dialog", { name: "Make ops@example.com an admin?" });
    await user.click(within(dialog).getByRole("button", { name: "Confirm" }));
    await waitFor(() => expect(within(row("ops@example.com")).getByRole("combobox")).toHaveTextContent("admin"));

    await user.click(within(row("owner@example.com")).getByRole("button", { name: "Disable owner@example.com" }));
    const own = await screen.findByRole("dialog", { name: "Disable owner@example.com?" });
    expect(own).toHaveTextContent("you will be signed out");
    await user.click(within(own).getByRole("button", { name: "Confirm" }));
    expect(await within(own).findByRole("alert")).toHaveTextContent("the last owner cannot be demoted or disabled");
    expect(patches(calls)).toEqual([["/api/v1/users/2", { role: "admin" }], ["/api/v1/users/1", { isActive: false }]]);
  });

  it("gives an admin no control over owners and no owner role to grant", async () => {
    const user = userEvent.setup();
    open("admin", { "GET /api/v1/users": () => json([person(1, "admin@example.com", "admin"),
      person(2, "boss@example.com", "owner"), person(3, "view@example.com", "viewer")]) });
    await screen.findByRole("table", { name: "Users" });
    const boss = row("boss@example.com");
    expect(within(boss).queryByRole("combobox")).not.toBeInTheDocument();
    expect(within(boss).queryByRole("button")).not.toBeInTheDocument();
    await user.click(within(row("view@example.com")).getByRole("combobox"));
    const options = (await screen.findAllByRole("option")).map((o) => o.textContent);
    expect(options).toEqual(["viewer", "operator", "admin"]);
  });

  it("creates a user, showing the API's messages at the fields", async () => {
    const user = userEvent.setup();
    let list = [person(1, "admin@example.com", "admin")];
    const { calls } = open("admin", {
      "GET /api/v1/users": () => json(list),
      "POST /api/v1/users": (c) => {
        const body = c.body as { email: string; password: string; role: Role };
        if (!body.email.includes("@")) {
          return json({ error: "validation_error", message: "body.email: value is not a valid email address",
            details: [{ loc: ["body", "email"], msg: "value is not a valid email address: An email address must have an @-sign." }] },
          422);
        }
        if (body.password.length < 10) {
          return json({ error: "weak_password", message: "password must have at least 10 characters" }, 422);
        }
        list = [...list, person(5, body.email, body.role)];
        return json(list[1], 201);
      },
    });
    await user.click(await screen.findByRole("button", { name: "New user" }));
    const dialog = await screen.findByRole("dialog", { name: "New user" });
    const email = within(dialog).getByRole("textbox", { name: "Email" });
    const password = within(dialog).getByLabelText(/Password/);
    await user.type(email, "new.user");
    await user.type(password, "short");
    await user.click(within(dialog).getByRole("combobox", { name: "Role" }));
    await user.click(await screen.findByRole("option", { name: "operator" }));
    await user.click(within(dialog).getByRole("button", { name: "Create user" }));
    await waitFor(() => expect(email).toHaveAccessibleDescription(/must have an @-sign/));

    await user.type(email, "@example.com");
    await user.click(within(dialog).getByRole("button", { name: "Create user" }));
    await waitFor(() => expect(password).toHaveAccessibleDescription("password must have at least 10 characters"));

    await user.type(password, "-and-longer");
    await user.click(within(dialog).getByRole("button", { name: "Create user" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(row("new.user@example.com")).toHaveTextContent("operator");
    expect(calls.filter((c) => c.method === "POST" && c.url.pathname === "/api/v1/users").at(-1)?.body)
      .toEqual({ email: "new.user@example.com", password: "short-and-longer", role: "operator" });
  });

  it("removes a user after confirmation", async () => {
    const user = userEvent.setup();
    let list = [person(1, "admin@example.com", "admin"), person(3, "view@example.com", "viewer")];
    open("admin", {
      "GET /api/v1/users": () => json(list),
      "DELETE /api/v1/users/3": () => {
        list = list.filter((u) => u.id !== 3);
        return json(null, 204);
      },
    });
    await screen.findByRole("table", { name: "Users" });
    await user.click(screen.getByRole("button", { name: "Remove view@example.com" }));
    await user.click(within(await screen.findByRole("dialog", { name: "Remove view@example.com?" }))
      .getByRole("button", { name: "Remove" }));
    await waitFor(() => expect(screen.queryByText("view@example.com")).not.toBeInTheDocument());
  });

  it("is for admins: an operator sees why and no request is made", async () => {
    const { calls } = open("operator", {});
    expect(await screen.findByRole("alert")).toHaveTextContent("Users are managed by admins.");
    expect(screen.queryByRole("button", { name: "New user" })).not.toBeInTheDocument();
    expect(calls.some((c) => c.url.pathname === "/api/v1/users")).toBe(false);
  });

  it("shows the API's error when the list fails", async () => {
    open("admin", { "GET /api/v1/users": () => json({ error: "forbidden",
      message: "this action needs the admin role or higher (you are operator)" }, 403) });
    expect(await screen.findByRole("alert")).toHaveTextContent("needs the admin role");
  });
});
