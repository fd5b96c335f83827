import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import type { Device } from "../../api/devices";
import { RequireAuth } from "../../auth/RequireAuth";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import DevicesPage from "./DevicesPage";
import { parseListState, toParams } from "./filters";

function device(i: number, extra: Partial<Device> = {}): Device {
  return { id: i, uuid: `uuid-${String(i).padStart(6, "0")}`, name: `sensor-${i}`, deviceType: "rpi4",
    status: "active", online: i % 2 === 0, fleet: { id: 1, name: "lobby" }, tags: { floor: "2" },
    lastSeenAt: new Date(Date.now() - 60_000).toISOString(), osVersion: null, agentVersion: null, ipAddress: null,
    createdAt: "2025-01-01T00:00:00Z", ...extra };
}

/** A server with `total` devices: answers each page the way the API pages (limit/offset), recording calls. */
function devicesApi(total: number, role: "viewer" | "operator" = "viewer") {
  return mockApi({
    ...signedInAs(role),
    "GET /api/v1/fleets": () => json([{ id: 1, name: "lobby" }, { id: 2, name: "roof" }]),
    "GET /api/v1/devices": (c) => {
      const limit = Number(c.url.searchParams.get("limit"));
      const offset = Number(c.url.searchParams.get("offset"));
      const n = Math.max(0, Math.min(limit, total - offset));
      return json({ items: Array.from({ length: n }, (_, k) => device(offset + k + 1)), total, limit, offset });
    },
  });
}

const listCalls = (calls: Call[]) => calls.filter((c) => c.url.pathname === "/api/v1/devices");
const page = (path = "/devices") =>
  renderAt(<RequireAuth><DevicesPage /></RequireAuth>, { path, pattern: "/devices" });

describe("devices list", () => {
  it("shows one page of 10,000 devices and pages on the server", async () => {
    const { calls } = devicesApi(10_000);
    page();
    // Text queries: role queries over a 50-row MUI table take seconds in jsdom.
    expect(await screen.findByText("sensor-1")).toHaveAttribute("href", "/devices/uuid-000001");
    const table = screen.getByLabelText("Devices", { selector: "table" });
    expect(table.querySelectorAll("tbody tr")).toHaveLength(50);
    expect(screen.getByText("10,000 devices")).toBeInTheDocument();
    expect(screen.getByText("1–50 of 10000")).toBeInTheDocument();

    await userEvent.setup().click(screen.getByLabelText(/next page/i));
    expect(await screen.findByText("sensor-51")).toBeInTheDocument();
    expect(screen.queryByText("sensor-1")).not.toBeInTheDocument();
    const last = listCalls(calls).at(-1)!;
    expect([last.url.searchParams.get("limit"), last.url.searchParams.get("offset")]).toEqual(["50", "50"]);
    expect(screen.getByTestId("location")).toHaveTextContent("/devices?page=1");
  });

  it("sends the filters to the API and starts again at the first page", async () => {
    const { calls } = devicesApi(27);
    page("/devices?page=1&size=25");
    await screen.findByText("sensor-26");
    const user = userEvent.setup();

    await user.click(screen.getByRole("combobox", { name: "Online" }));
    await user.click(await screen.findByRole("option", { name: "Offline" }));
    await waitFor(() => expect(listCalls(calls).at(-1)!.url.searchParams.get("online")).toBe("false"));
    expect(listCalls(calls).at(-1)!.url.searchParams.get("offset")).toBe("0");

    await user.click(screen.getByRole("combobox", { name: "Fleet" }));
    await user.click(await screen.findByRole("option", { name: "roof" }));
    await waitFor(() => expect(listCalls(calls).at(-1)!.url.searchParams.get("fleet")).toBe("roof"));

    await user.click(screen.getByRole("combobox", { name: "Status" }));
    await user.click(await screen.findByRole("option", { name: "disabled" }));
    await user.type(screen.getByLabelText("Tag (key or key:value)"), "floor:2");
    await user.type(screen.getByLabelText("Search name or UUID"), "sens");
    await waitFor(() => expect(listCalls(calls).at(-1)!.url.searchParams.get("text")).toBe("sens"));
    const q = listCalls(calls).at(-1)!.url.searchParams;
    expect(Object.fromEntries(q)).toEqual({ online: "false", fleet: "roof", status: "disabled", tag: "floor:2",
      text: "sens", limit: "25", offset: "0" });
    // Typing is debounced: not one request per keystroke.
    expect(listCalls(calls).filter((c) => c.url.searchParams.get("text")?.startsWith("s")).length).toBeLessThan(3);
    expect(screen.getByTestId("location")).toHaveTextContent("status=disabled");
  });

  it("says when there are no devices, and when none match the filters", async () => {
    devicesApi(0);
    const { unmount } = page();
    expect(await screen.findByText("No devices yet")).toBeInTheDocument();
    unmount();
    devicesApi(0);
    page("/devices?online=true");
    expect(await screen.findByText("No devices match these filters")).toBeInTheDocument();
    await userEvent.setup().click(screen.getByRole("button", { name: "Clear filters" }));
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent(/^\/devices$/));
  });

  it("shows the API's error with a retry", async () => {
    let fail = true;
    mockApi({
      ...signedInAs("viewer"),
      "GET /api/v1/fleets": () => json([]),
      "GET /api/v1/devices": () => (fail
        ? json({ error: "bad_request", message: "tag must be key or key:value" }, 400)
        : json({ items: [device(1)], total: 1, limit: 50, offset: 0 })),
    });
    page("/devices?tag=x");
    expect(await screen.findByRole("alert")).toHaveTextContent("tag must be key or key:value");
    fail = false;
    await userEvent.setup().click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByRole("link", { name: "sensor-1" })).toBeInTheDocument();
  });

  it("keeps the list state in the URL, ignoring values the API would refuse", () => {
    const s = parseListState(new URLSearchParams("status=bogus&online=maybe&fleet=lobby&size=7&page=-3&text=%20a%20"));
    expect(s).toEqual({ filters: { fleet: "lobby", text: "a" }, page: 0, pageSize: 50 });
    expect(toParams({ filters: { online: false, tag: "k:v" }, page: 2, pageSize: 100 }).toString())
      .toBe("online=false&tag=k%3Av&page=2&size=100");
  });
});
