import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import type { AuditEvent } from "../../api/audit";
import type { Role } from "../../api/types";
import { RequireAuth } from "../../auth/RequireAuth";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import AuditPage from "./AuditPage";

configure({ asyncUtilTimeout: 5000 });
vi.setConfig({ testTimeout: 20_000 });

type Routes = Parameters<typeof mockApi>[0];

const event = (id: number, extra: Partial<AuditEvent> = {}): AuditEvent => ({ id, at: "2026-03-01T10:00:00Z",
  actor: "admin@example.com", action: "user.created", targetType: "user", targetId: String(id),
  details: { email: `u${id}@example.com`, role: "viewer" }, ip: "127.0.0.1", ...extra });

/** The API's answer for a limit/offset request over `all` events. */
function page(all: AuditEvent[], c: Call) {
  const limit = Number(c.url.searchParams.get("limit"));
  const offset = Number(c.url.searchParams.get("offset"));
  return json(all.slice(offset, offset + limit));
}

function open(role: Role, routes: Routes) {
  const api = mockApi({ ...signedInAs(role), ...routes });
  renderAt(<RequireAuth><AuditPage /></RequireAuth>);
  return api;
}

const auditCalls = (calls: Call[]) => calls.filter((c) => c.url.pathname === "/api/v1/audit");

describe("audit log", () => {
  it("pages through events without a total from the API", async () => {
    const user = userEvent.setup();
    const all = Array.from({ length: 30 }, (_x, i) => event(100 - i));
    const { calls } = open("admin", { "GET /api/v1/audit": (c) => page(all, c) });
    const table = await screen.findByRole("table", { name: "Audit events" });
    expect(within(table).getAllByRole("row")).toHaveLength(26);
    expect(within(table).getByText("user 100")).toBeInTheDocument();
    expect(within(table).getByText("email: u100@example.com, role: viewer")).toBeInTheDocument();
    expect(screen.getByText("1–25 of more than 25")).toBeInTheDocument();
    // One row more than shown is asked for: that is how a next page is known to exist.
    expect(auditCalls(calls)[0]?.url.search).toBe("?limit=26&offset=0");

    await user.click(screen.getByRole("button", { name: "Go to next page" }));
    await waitFor(() => expect(within(screen.getByRole("table")).getAllByRole("row")).toHaveLength(6));
    expect(screen.getByText("26–30 of 30")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Go to next page" })).toBeDisabled();
  });

  it("filters by action, actor and time window", async () => {
    const user = userEvent.setup();
    const { calls } = open("admin", {
      "GET /api/v1/audit": (c) => json(c.url.searchParams.get("action") === "device.deleted"
        ? [] : [event(1)]),
    });
    await screen.findByRole("table", { name: "Audit events" });
    await user.type(screen.getByRole("textbox", { name: "Action" }), "device.deleted");
    await user.type(screen.getByRole("textbox", { name: "Who" }), "ops@example.com");
    await user.type(screen.getByLabelText("From"), "2026-03-01T08:00");
    await user.type(screen.getByLabelText("Until"), "2026-03-02T08:00");
    // Nothing is asked while typing; Apply asks once.
    expect(auditCalls(calls)).toHaveLength(1);
    await user.click(screen.getByRole("button", { name: "Apply" }));
    expect(await screen.findByText("No events match these filters")).toBeInTheDocument();
    const q = auditCalls(calls).at(-1)!.url.searchParams;
    expect(q.get("action")).toBe("device.deleted");
    expect(q.get("actor")).toBe("ops@example.com");
    expect(q.get("since")).toBe(new Date("2026-03-01T08:00").toISOString());
    expect(q.get("until")).toBe(new Date("2026-03-02T08:00").toISOString());

    await user.click(screen.getByRole("button", { name: "Clear filters" }));
    expect(await screen.findByText("user 1")).toBeInTheDocument();
    expect(screen.getByRole("textbox", { name: "Action" })).toHaveValue("");
    expect(screen.queryByRole("button", { name: "Clear filters" })).not.toBeInTheDocument();
  });

  it("shows the API's message for a bad filter and the empty log", async () => {
    const user = userEvent.setup();
    open("admin", {
      "GET /api/v1/audit": (c) => (c.url.searchParams.get("actor")
        ? json({ error: "validation_error", message: "query.actor: String should have at most 254 characters" }, 422)
        : json([])),
    });
    expect(await screen.findByText("No events yet")).toBeInTheDocument();
    await user.type(screen.getByRole("textbox", { name: "Who" }), "x");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("query.actor: String should have at most 254 characters");
  });

  it("is for admins", async () => {
    const { calls } = open("operator", {});
    expect(await screen.findByRole("alert")).toHaveTextContent("The audit log is for admins.");
    expect(auditCalls(calls)).toEqual([]);
  });
});
