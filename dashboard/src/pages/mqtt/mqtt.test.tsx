import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Suspense } from "react";
import { describe, expect, it, vi } from "vitest";

import type { MqttAccount } from "../../api/mqtt";
import type { Role } from "../../api/types";
import { RequireAuth } from "../../auth/RequireAuth";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import MqttArea from "./index";

configure({ asyncUtilTimeout: 5000 });
// Forms of MUI fields typed into key by key in jsdom, on a shared CI machine: seconds per test.
vi.setConfig({ testTimeout: 20_000 });

type Routes = Parameters<typeof mockApi>[0];

const ingest: MqttAccount = { id: 4, username: "ingest", kind: "service", deviceUuid: null, isActive: true,
  createdAt: "2026-01-01T00:00:00Z", rules: [{ id: 9, topic: "iot/device/+/sensor/#", access: "read" }] };
const device: MqttAccount = { id: 5, username: "dev-1a2b3c4d", kind: "device", deviceUuid: "dev-1a2b3c4d",
  isActive: true, createdAt: "2026-01-01T00:00:00Z",
  rules: [{ id: 10, topic: "iot/device/dev-1a2b3c4d/#", access: "readwrite" },
    { id: 11, topic: "fleet/broadcast", access: "read" }] };

function open(role: Role, url: string, routes: Routes) {
  const api = mockApi({ ...signedInAs(role), ...routes });
  renderAt(<RequireAuth><Suspense fallback={null}><MqttArea /></Suspense></RequireAuth>,
    { path: url, pattern: "/mqtt/*" });
  return api;
}

const bodies = (calls: Call[], method: string, path: string) =>
  calls.filter((c) => c.method === method && c.url.pathname === path).map((c) => c.body);

describe("MQTT accounts", () => {
  it("lists accounts by kind with server-side paging", async () => {
    const user = userEvent.setup();
    const { calls } = open("viewer", "/mqtt", {
      "GET /api/v1/mqtt/accounts": (c) => json({ items: c.url.searchParams.get("kind") === "device" ? [device]
        : [ingest], total: 60, limit: 25, offset: Number(c.url.searchParams.get("offset")) }),
    });
    const table = await screen.findByRole("table", { name: "MQTT accounts" });
    expect(within(table).getByRole("link", { name: "ingest" })).toHaveAttribute("href", "/mqtt/accounts/4");
    expect(within(table).getByText("read iot/device/+/sensor/#")).toBeInTheDocument();
    expect(screen.getByText("1–25 of 60")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Go to next page" }));
    await waitFor(() => expect(calls.at(-1)?.url.searchParams.get("offset")).toBe("25"));
    await user.click(screen.getByRole("button", { name: "Device" }));
    expect(await screen.findByRole("link", { name: "dev-1a2b3c4d" })).toBeInTheDocument();
    expect(calls.at(-1)?.url.search).toBe("?kind=device&limit=25&offset=0");
    // A viewer reads, and has nothing to press.
    expect(screen.queryByRole("button", { name: "New account" })).not.toBeInTheDocument();
  });

  it("creates an account: API messages at their fields, then the generated password once", async () => {
    const user = userEvent.setup();
    const { calls } = open("admin", "/mqtt", {
      "GET /api/v1/mqtt/accounts": () => json({ items: [], total: 0, limit: 25, offset: 0 }),
      "POST /api/v1/mqtt/accounts": (c) => {
        const body = c.body as { rules: { topic: string }[]; password?: string };
        if (body.password !== undefined) {
          return json({ error: "weak_password", message: "password must have at least 16 characters" }, 422);
        }
        if (body.rules.some((r) => r.topic.includes("#/"))) {
          return json({ error: "validation_error", message: "body.rules.1.topic: '#' must be the last level",
            details: [{ loc: ["body", "rules", 1, "topic"], msg: "'#' must be the last level" }] }, 422);
        }
        return json({ ...ingest, id: 8, username: "grafana", kind: "integration", password: "s3cr3t-generated-pw" },
          201);
      },
    });
    expect(await screen.findByText("No MQTT accounts")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "New account" }));
    const dialog = await screen.findByRole("dialog", { name: "New MQTT account" });
    await user.type(within(dialog).getByRole("textbox", { name: "Username" }), "grafana");
    await user.click(within(dialog).getByRole("switch", { name: /Generate a password/ }));
    await user.type(within(dialog).getByLabelText("Password"), "short");
    // Row 1 stays blank: it is not sent, and row 2's error still lands on row 2.
    await user.click(within(dialog).getByRole("button", { name: "Add rule" }));
    await user.click(within(dialog).getByRole("button", { name: "Add rule" }));
    await user.type(within(dialog).getByRole("textbox", { name: "Rule 2 topic" }), "iot/device/+/state");
    await user.type(within(dialog).getByRole("textbox", { name: "Rule 3 topic" }), "a/#/b");
    await user.click(within(dialog).getByRole("button", { name: "Create account" }));
    await waitFor(() => expect(within(dialog).getByLabelText("Password"))
      .toHaveAccessibleDescription("password must have at least 16 characters"));

    await user.click(within(dialog).getByRole("switch", { name: /Generate a password/ }));
    await user.click(within(dialog).getByRole("button", { name: "Create account" }));
    const rule3 = within(dialog).getByRole("textbox", { name: "Rule 3 topic" });
    await waitFor(() => expect(rule3).toHaveAccessibleDescription("'#' must be the last level"));
    expect(within(dialog).getByRole("textbox", { name: "Rule 2 topic" })).not.toHaveAttribute("aria-invalid", "true");

    await user.clear(rule3);
    await user.type(rule3, "grafana/#");
    await user.click(within(dialog).getByRole("button", { name: "Create account" }));
    const secret = await screen.findByRole("dialog", { name: "Account grafana created" });
    expect(within(secret).getByRole("textbox", { name: "Password" })).toHaveValue("s3cr3t-generated-pw");
    expect(bodies(calls, "POST", "/api/v1/mqtt/accounts").at(-1)).toEqual({ username: "grafana", kind: "service",
      rules: [{ topic: "iot/device/+/state", access: "read" }, { topic: "grafana/#", access: "read" }] });
  });

  it("edits a service account's rules and resets its password (shown once)", async () => {
    const user = userEvent.setup();
    let account = ingest;
    const { calls } = open("admin", "/mqtt/accounts/4", {
      "GET /api/v1/mqtt/accounts/4": () => json(account),
      "POST /api/v1/mqtt/accounts/4/rules": (c) => {
        const rule = c.body as { topic: string; access: "read" };
        if (rule.topic.includes("%u/x%c")) {
          return json({ error: "validation_error", message: "body.topic: %c must occupy a whole level",
            details: [{ loc: ["body", "topic"], msg: "Value error, %c must occupy a whole level of the rule topic" }] },
          422);
        }
        account = { ...account, rules: [...account.rules, { id: 12, ...rule }] };
        return json(account.rules.at(-1), 201);
      },
      "DELETE /api/v1/mqtt/accounts/4/rules/9": () => {
        account = { ...account, rules: account.rules.filter((r) => r.id !== 9) };
        return json(null, 204);
      },
      "PATCH /api/v1/mqtt/accounts/4": () => json({ ...account, password: "fresh-password-1234" }),
    });
    expect(await screen.findByRole("heading", { name: "MQTT account ingest" })).toBeInTheDocument();
    const topic = screen.getByRole("textbox", { name: "Topic filter" });
    await user.type(topic, "out/%u/x%c");
    await user.click(screen.getByRole("button", { name: "Add rule" }));
    await waitFor(() => expect(topic).toHaveAccessibleDescription("%c must occupy a whole level of the rule topic"));
    await user.clear(topic);
    await user.type(topic, "out/%u/#");
    await user.click(screen.getByRole("combobox", { name: "Access" }));
    await user.click(await screen.findByRole("option", { name: "write" }));
    await user.click(screen.getByRole("button", { name: "Add rule" }));
    const rules = screen.getByRole("table", { name: "ACL rules" });
    expect(await within(rules).findByText("out/%u/#")).toBeInTheDocument();
    expect(topic).toHaveValue("");
    await user.click(within(rules).getByRole("button", { name: "Remove rule read iot/device/+/sensor/#" }));
    await waitFor(() => expect(within(rules).queryByText("iot/device/+/sensor/#")).not.toBeInTheDocument());

    await user.click(screen.getByRole("button", { name: "Reset password" }));
    await user.click(within(await screen.findByRole("dialog")).getByRole("button", { name: "Reset password" }));
    const secret = await screen.findByRole("dialog", { name: "New password for ingest" });
    expect(within(secret).getByRole("textbox", { name: "Password" })).toHaveValue("fresh-password-1234");
    expect(bodies(calls, "PATCH", "/api/v1/mqtt/accounts/4")).toEqual([{ resetPassword: true }]);
  });

  it("keeps a device's account with its device: no account controls, and its own rule stays", async () => {
    open("admin", "/mqtt/accounts/5", { "GET /api/v1/mqtt/accounts/5": () => json(device) });
    expect(await screen.findByText(/belongs to device/)).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "dev-1a2b3c4d" })).toHaveAttribute("href", "/devices/dev-1a2b3c4d");
    for (const name of ["Disable", "Reset password", "Delete"]) {
      expect(screen.queryByRole("button", { name })).not.toBeInTheDocument();
    }
    const rules = screen.getByRole("table", { name: "ACL rules" });
    expect(within(rules).queryByRole("button", { name: /iot\/device\/dev-1a2b3c4d/ })).not.toBeInTheDocument();
    expect(within(rules).getByRole("button", { name: "Remove rule read fleet/broadcast" })).toBeInTheDocument();
  });

  it("deletes an account after confirmation, showing the API's refusal", async () => {
    const user = userEvent.setup();
    let refuse = true;
    open("admin", "/mqtt/accounts/4", {
      "GET /api/v1/mqtt/accounts/4": () => json(ingest),
      "GET /api/v1/mqtt/accounts": () => json({ items: [], total: 0, limit: 25, offset: 0 }),
      "DELETE /api/v1/mqtt/accounts/4": () => (refuse
        ? json({ error: "internal_error", message: "internal server error" }, 500) : json(null, 204)),
    });
    await user.click(await screen.findByRole("button", { name: "Delete" }));
    const dialog = await screen.findByRole("dialog");
    await user.click(within(dialog).getByRole("button", { name: "Delete" }));
    expect(await within(dialog).findByRole("alert")).toHaveTextContent("internal server error");
    refuse = false;
    await user.click(within(dialog).getByRole("button", { name: "Delete" }));
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent(/^\/mqtt$/));
  });

  it("shows a viewer the rules without controls, and a missing account's message", async () => {
    const { calls } = open("viewer", "/mqtt/accounts/4", { "GET /api/v1/mqtt/accounts/4": () => json(ingest) });
    expect(await screen.findByRole("table", { name: "ACL rules" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Remove rule/ })).not.toBeInTheDocument();
    expect(screen.queryByRole("form", { name: "Add ACL rule" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Reset password" })).not.toBeInTheDocument();
    expect(calls.every((c) => c.method === "GET" || c.url.pathname.startsWith("/api/v1/auth"))).toBe(true);
  });

  it("says when an account does not exist", async () => {
    open("viewer", "/mqtt/accounts/77", { "GET /api/v1/mqtt/accounts/77": () => json({ error: "not_found",
      message: "MQTT account not found" }, 404) });
    expect(await screen.findByRole("alert")).toHaveTextContent("MQTT account not found");
  });
});
