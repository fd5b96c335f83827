import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

import type { Role } from "../../api/types";
import type { CurrentState, Device, Target, TargetDocument } from "../../api/devices";
import { RequireAuth } from "../../auth/RequireAuth";
import { json, mockApi } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import DevicePage from "./DevicePage";
import { mergePoints } from "./LiveMetricsCard";
import { actionsFor, serviceRows } from "./services";
import { tagProblems } from "./TagsCard";

const UUID = "dev-0000000001";
const DEVICE: Device = { id: 1, uuid: UUID, name: "boiler-1", deviceType: "rpi4", status: "active", online: true,
  fleet: { id: 3, name: "plant" }, tags: { floor: "2" }, lastSeenAt: new Date().toISOString(), osVersion: "Debian 12",
  agentVersion: "1.0.0", ipAddress: "10.0.0.5", createdAt: "2025-01-01T00:00:00Z" };

function doc(state: "running" | "paused" | "stopped" = "running"): TargetDocument {
  return { apps: { "1": { appId: 1, appName: "plant", services: [
    { serviceId: 1, serviceName: "nginx", state, config: { image: "nginx:1.27" } }] } }, config: {} };
}

function target(state: "running" | "paused" | "stopped" = "running", version = 2, pending = false): Target {
  return { staged: doc(state), deployed: doc(state), version, releaseId: null, stagedAt: "2025-01-01T00:00:00Z",
    deployedAt: "2025-01-01T00:00:00Z", pending };
}

const CURRENT: CurrentState = { uuid: UUID, reportedAt: new Date().toISOString(), state: { appliedVersion: 2,
  status: "idle", apps: { "1": { appId: 1, appName: "plant", services: [
    { serviceName: "nginx", status: "running", image: "nginx:1.27", restartCount: 1 }] } } } };

/** A fake WebSocket the page's live socket opens; the test plays the server. */
class FakeSocket {
  static last: FakeSocket | null = null;
  sent: { type: string; [k: string]: unknown }[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  constructor() {
    FakeSocket.last = this;
    setTimeout(() => this.onopen?.(), 0);
  }
  send(data: string) {
    const msg = JSON.parse(data) as { type: string };
    this.sent.push(msg);
    if (msg.type === "auth") this.server({ type: "authenticated", role: "viewer" });
  }
  close() {
    setTimeout(() => this.onclose?.({ code: 1000, reason: "" }), 0);
  }
  server(msg: unknown) {
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(msg) }), 0);
  }
}

beforeEach(() => {
  FakeSocket.last = null;
  vi.stubGlobal("WebSocket", FakeSocket);
  // recharts sizes its charts with ResizeObserver, which jsdom lacks.
  vi.stubGlobal("ResizeObserver", class { observe() {} unobserve() {} disconnect() {} });
});

function deviceApi(role: Role, opts: { target?: Target; licence?: Record<string, unknown> } = {}) {
  let current = opts.target ?? target();
  return mockApi({
    ...signedInAs(role),
    [`GET /api/v1/devices/${UUID}`]: () => json(DEVICE),
    [`GET /api/v1/devices/${UUID}/target-state`]: () => json(current),
    [`GET /api/v1/devices/${UUID}/current-state`]: () => json(CURRENT),
    [`GET /api/v1/devices/${UUID}/logs`]: () => json([
      { timestamp: "2025-01-01T00:00:00Z", serviceName: "nginx", message: "listening on :80", isStderr: false }]),
    [`GET /api/v1/devices/${UUID}/telemetry/metrics`]: () => json([
      { metric: "system.cpu", ts: "2025-01-01T00:00:00Z", value: 12, unit: "%" }]),
    [`GET /api/v1/devices/${UUID}/telemetry`]: () => json({ device: UUID, metric: "system.cpu", from: "", to: "",
      bucket: 0, readings: [] }),
    [`POST /api/v1/devices/${UUID}/apps/1/services/nginx/pause`]: () => {
      current = target("paused", current.version + 1);
      return json(current);
    },
    [`POST /api/v1/devices/${UUID}/apps/1/services/nginx/stop`]: () =>
      json({ error: "conflict", message: "service 'nginx' is already stopped in the target" }, 409),
    [`POST /api/v1/devices/${UUID}/deploy`]: () => {
      current = { ...current, version: current.version + 1, pending: false };
      return json(current);
    },
    [`PUT /api/v1/devices/${UUID}/tags`]: (c) => json(c.body),
    "GET /api/v1/license": () => json({ features: opts.licence ?? {} }),
  });
}

const open = () => renderAt(<RequireAuth><DevicePage /></RequireAuth>, { path: `/devices/${UUID}`,
  pattern: "/devices/:uuid" });

describe("device page", () => {
  it("shows identity, tags, services with target beside reported state, and logs", async () => {
    deviceApi("viewer");
    open();
    expect(await screen.findByRole("heading", { name: "boiler-1" })).toBeInTheDocument();
    expect(screen.getByText(UUID)).toBeInTheDocument();
    expect(screen.getByText("Debian 12")).toBeInTheDocument();
    expect(screen.getByText("floor: 2")).toBeInTheDocument();
    const row = await screen.findByRole("region", { name: "Service nginx" });
    expect(within(row).getAllByText("running")).toHaveLength(2); // target and reported
    expect(within(row).getByText("1 restarts")).toBeInTheDocument();
    expect(screen.getByText(/Target version 2/)).toBeInTheDocument();
    expect(screen.getByText("converged")).toBeInTheDocument();
    expect(await screen.findByText("listening on :80")).toBeInTheDocument();
  });

  it("a viewer sees no controls it cannot use", async () => {
    deviceApi("viewer", { target: target("running", 2, true), licence: { vpn: true } });
    open();
    await screen.findByRole("region", { name: "Service nginx" });
    await screen.findByText(/not deployed yet/);
    expect(screen.queryByRole("button", { name: /pause nginx|stop nginx|restart nginx|start nginx/i }))
      .not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Edit tags" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Deploy" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "VPN configuration" })).not.toBeInTheDocument();
  });

  it("an operator pauses a service, then sees it paused with a Start control", async () => {
    const { calls } = deviceApi("operator");
    open();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Pause nginx" }));
    expect(await screen.findByRole("button", { name: "Start nginx" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Pause nginx" })).not.toBeInTheDocument();
    expect(screen.getByText(/Pause: nginx — target version 3 deployed/)).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST" && !c.url.pathname.startsWith("/api/v1/auth"))
      .map((c) => c.url.pathname))
      .toEqual([`/api/v1/devices/${UUID}/apps/1/services/nginx/pause`]);
  });

  it("asks before stopping and shows the API's refusal in the dialog", async () => {
    deviceApi("operator");
    open();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Stop nginx" }));
    const dialog = await screen.findByRole("dialog", { name: "Stop nginx?" });
    await user.click(within(dialog).getByRole("button", { name: "Stop" }));
    expect(await within(dialog).findByRole("alert")).toHaveTextContent("already stopped in the target");
  });

  it("deploys a staged target", async () => {
    const { calls } = deviceApi("operator", { target: target("running", 2, true) });
    open();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Deploy" }));
    await waitFor(() => expect(screen.queryByText(/not deployed yet/)).not.toBeInTheDocument());
    expect(screen.getByText(/Target version 3/)).toBeInTheDocument();
    expect(calls.some((c) => c.method === "POST" && c.url.pathname.endsWith("/deploy"))).toBe(true);
  });

  it("edits tags, checking keys before the API sees them", async () => {
    const { calls } = deviceApi("operator");
    open();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Edit tags" }));
    await user.click(screen.getByRole("button", { name: "Add tag" }));
    await user.type(screen.getByLabelText("Key 2"), "bad key");
    expect(screen.getByText("Key: 1–64 letters, digits, . _ or -")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Save tags" })).toBeDisabled();
    await user.clear(screen.getByLabelText("Key 2"));
    await user.type(screen.getByLabelText("Key 2"), "zone");
    await user.type(screen.getByLabelText("Value 2"), "north");
    await user.click(screen.getByRole("button", { name: "Remove tag floor" }));
    await user.click(screen.getByRole("button", { name: "Save tags" }));
    await waitFor(() => expect(calls.find((c) => c.method === "PUT")?.body).toEqual({ zone: "north" }));
  });

  it("offers the VPN configuration to an admin when the plan includes VPN and downloads it", async () => {
    const { fn } = deviceApi("admin", { licence: { vpn: true } });
    const saved: string[] = [];
    // jsdom has no object URLs; the download only needs one to hand to the link.
    Object.assign(URL, { createObjectURL: () => "blob:x", revokeObjectURL: () => undefined });
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      saved.push(this.download);
    });
    const routes = fn.getMockImplementation()!;
    let enabled = true;
    fn.mockImplementation(async (input, init) => {
      if (String(input).endsWith("/vpn/config")) {
        return enabled
          ? new Response("client\nremote vpn.example.com\n", { status: 200, headers: {
            "Content-Type": "application/x-openvpn-profile", "Content-Disposition": `attachment; filename="${UUID}.ovpn"` } })
          : json({ error: "vpn_disabled", message: "VPN is not enabled in this cloud (VPN_ENABLED)" }, 404);
      }
      return routes(input, init);
    });
    open();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "VPN configuration" }));
    await waitFor(() => expect(saved).toEqual([`${UUID}.ovpn`]));
    enabled = false;
    await user.click(screen.getByRole("button", { name: "VPN configuration" }));
    expect(await screen.findByText("VPN is not enabled in this cloud (VPN_ENABLED)")).toBeInTheDocument();
    click.mockRestore();
  });

  it("hides the VPN configuration when the plan has no VPN", async () => {
    deviceApi("owner", { licence: { vpn: false } });
    open();
    await screen.findByRole("region", { name: "Service nginx" });
    expect(screen.queryByRole("button", { name: "VPN configuration" })).not.toBeInTheDocument();
  });

  it("charts live readings from the WebSocket", async () => {
    deviceApi("viewer");
    open();
    const chart = await screen.findByTestId("live-chart-system.cpu", {}, { timeout: 5000 });
    await waitFor(() => expect(FakeSocket.last?.sent.map((m) => m.type)).toEqual(["auth", "subscribe"]));
    expect(FakeSocket.last?.sent[1]).toEqual({ type: "subscribe", devices: [UUID] });
    expect(chart).toHaveAttribute("data-points", "0");
    await act(async () => {
      FakeSocket.last?.server({ type: "reading", device: UUID, metric: "system.cpu", ts: new Date().toISOString(),
        value: 42.5, unit: "%" });
      await new Promise((r) => setTimeout(r, 10));
    });
    await waitFor(() => expect(screen.getByTestId("live-chart-system.cpu")).toHaveAttribute("data-points", "1"));
    expect(screen.getByRole("button", { name: /system\.cpu 42\.5 %/ })).toBeInTheDocument();
  });
});

describe("device page helpers", () => {
  it("lines up target and reported services, including ones only the device still runs", () => {
    const rows = serviceRows(target("paused"), { ...CURRENT, state: { apps: { "1": { appId: 1, services: [
      { serviceName: "nginx", status: "paused" }, { serviceName: "old", status: "exited" }] } } } });
    expect(rows.map((r) => [r.serviceName, r.target, r.reported])).toEqual([
      ["nginx", "paused", "paused"], ["old", null, "exited"]]);
    expect(actionsFor("running")).toEqual(["pause", "stop", "restart"]);
    expect(actionsFor("stopped")).toEqual(["start"]);
    expect(actionsFor(null)).toEqual([]);
  });

  it("flags bad and duplicate tag keys", () => {
    const p = tagProblems([{ id: 1, key: "a", value: "" }, { id: 2, key: "a", value: "" },
      { id: 3, key: "x:y", value: "" }, { id: 4, key: "ok", value: "v".repeat(257) }]);
    expect([...p.keys()]).toEqual([2, 3, 4]);
  });

  it("joins history and live points without duplicates, inside the window", () => {
    const seed = [{ t: 10, v: 1 }, { t: 20, v: 2 }];
    const live = [{ t: 20, v: 2 }, { t: 30, v: 3 }];
    expect(mergePoints(seed, live, 15)).toEqual([{ t: 20, v: 2 }, { t: 30, v: 3 }]);
  });
});

describe("live chart defaults", () => {
  it("charts load and common readings first, two at most", async () => {
    const { defaultSelection } = await import("./LiveMetricsCard");
    expect(defaultSelection(["gas", "humidity", "pressure", "temperature"])).toEqual(["temperature", "humidity"]);
    expect(defaultSelection(["b", "a"])).toEqual(["b", "a"]);
    expect(defaultSelection([])).toEqual([]);
  });
});
