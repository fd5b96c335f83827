import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

import type { Role } from "../../api/types";
import { json, mockApi } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import TwinPage from "./TwinPage";

configure({ asyncUtilTimeout: 5000 });

// The real 3D view needs WebGL, which jsdom lacks: a stand-in with the same props shows what the page gives it.
vi.mock("./Graph3D", () => ({
  default: ({ graph, selected, onSelect }: { graph: { nodes: { id: number; name: string }[] };
    selected: number | null; onSelect: (id: number) => void }) => {
    if (graph.nodes.some((n) => n.name === "explodes")) throw new Error("Error creating WebGL context");
    return (
      <div data-testid="fake-3d" data-selected={selected ?? ""}>
        {graph.nodes.map((n) => <button key={n.id} onClick={() => onSelect(n.id)}>3D {n.name}</button>)}
      </div>
    );
  },
}));

const BOILER = "b".repeat(32);
const graph = {
  nodes: [
    { id: 1, kind: "Project", name: "Tower" }, { id: 2, kind: "Site", name: "Site" },
    { id: 3, kind: "Building", name: "North" }, { id: 4, kind: "Storey", name: "Level 1" },
    { id: 5, kind: "Space", name: "Room 1", globalId: "gid-room-1", ifcClass: "IfcSpace" },
    { id: 6, kind: "Space", name: "Room 2" }, { id: 7, kind: "Device", name: "boiler", device: BOILER },
  ],
  links: [
    { id: 1, source: 1, target: 2, kind: "CONTAINS" }, { id: 2, source: 2, target: 3, kind: "CONTAINS" },
    { id: 3, source: 3, target: 4, kind: "CONTAINS" }, { id: 4, source: 4, target: 5, kind: "CONTAINS" },
    { id: 5, source: 4, target: 6, kind: "CONTAINS" }, { id: 6, source: 7, target: 5, kind: "LOCATED_IN" },
  ],
  truncated: false,
};
const room1Telemetry = {
  node: graph.nodes[4],
  devices: [{ uuid: BOILER, name: "boiler", nodeId: 7, locatedIn: 5, readings: [
    { metric: "temperature", value: 21.456, unit: "°C", ts: "2026-03-10T12:00:00Z" },
    { metric: "pressure", value: 2, unit: null, ts: "2026-03-10T12:00:00Z" }] }],
};
const device = (uuid: string, name: string) => ({ id: 1, uuid, name, deviceType: "sensor", status: "active",
  online: true, fleet: null, tags: {}, lastSeenAt: null, osVersion: null, agentVersion: null, ipAddress: null,
  createdAt: "2026-01-01T00:00:00Z" });

function withWebGL(available: boolean) {
  const context = { getExtension: () => ({ loseContext: () => undefined }) };
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(
    (() => (available ? context : null)) as unknown as typeof HTMLCanvasElement.prototype.getContext);
}

function api(role: Role, extra: Parameters<typeof mockApi>[0] = {}) {
  return mockApi({ ...signedInAs(role),
    "GET /api/v1/twin/graph": () => json(graph),
    "GET /api/v1/twin/nodes/5/telemetry": () => json(room1Telemetry),
    "GET /api/v1/twin/nodes/6/telemetry": () => json({ node: graph.nodes[5], devices: [] }),
    ...extra });
}

beforeEach(() => withWebGL(false));

describe("digital twin page", () => {
  it("shows the building as a tree and says plainly when the browser has no WebGL", async () => {
    api("viewer");
    renderAt(<TwinPage />, { path: "/twin" });
    const tree = await screen.findByRole("tree", { name: "Building tree" });
    // Project, site and building open at first, so the storeys are in view.
    expect(within(tree).getByRole("treeitem", { name: /^Level 1 · Storey/ })).toBeInTheDocument();
    expect(screen.getByTestId("graph-summary")).toHaveTextContent("7 nodes · 6 links");
    expect(screen.getByTestId("graph-3d-unavailable")).toHaveTextContent(
      "No 3D view. This browser cannot draw 3D graphics here (WebGL is unavailable or turned off).");
    expect(screen.queryByTestId("fake-3d")).not.toBeInTheDocument();
  });

  it("loads the 3D view when WebGL is there; a pick in it opens the tree there and shows the space", async () => {
    withWebGL(true);
    api("viewer");
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    await user.click(await screen.findByRole("button", { name: "3D Room 1" }));
    expect(screen.getByTestId("fake-3d")).toHaveAttribute("data-selected", "5");
    const item = await screen.findByRole("treeitem", { name: /^Room 1 · Space/ });
    expect(item).toHaveAttribute("aria-checked", "true"); // the tree view marks selection with aria-checked
    const panel = await screen.findByRole("list", { name: "Devices in Room 1" });
    expect(within(panel).getByRole("link", { name: "boiler" })).toHaveAttribute("href", `/devices/${BOILER}`);
    expect(within(panel).getByText("temperature: 21.46 °C")).toBeInTheDocument();
    expect(within(panel).getByText("pressure: 2")).toBeInTheDocument();
  });

  it("degrades to a message when the 3D view fails to start", async () => {
    withWebGL(true);
    vi.spyOn(console, "error").mockImplementation(() => undefined); // React reports the caught error
    mockApi({ ...signedInAs("viewer"), "GET /api/v1/twin/graph": () => json({ ...graph,
      nodes: [...graph.nodes, { id: 8, kind: "Space", name: "explodes" }] }) });
    renderAt(<TwinPage />, { path: "/twin" });
    expect(await screen.findByTestId("graph-3d-unavailable")).toHaveTextContent(
      "The 3D view failed to start (Error creating WebGL context).");
    expect(screen.getByRole("tree", { name: "Building tree" })).toBeInTheDocument();
  });

  it("shows a space's devices and readings when it is picked in the tree, and an empty space as empty", async () => {
    api("viewer");
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    // A small building opens down to its spaces.
    await user.click(await screen.findByText("Room 1 · Space"));
    const panel = await screen.findByRole("region", { name: /Room 1/ });
    expect(panel).toHaveTextContent("IfcSpace · GlobalId gid-room-1");
    expect(within(panel).getByText("temperature: 21.46 °C")).toBeInTheDocument();
    await user.click(screen.getByText("Room 2 · Space"));
    expect(await screen.findByText("No devices here")).toBeInTheDocument();
  });

  it("maps a device to a space by picking both, and unmaps it", async () => {
    const { calls } = api("operator", {
      "GET /api/v1/devices": (c) => json({ items: c.url.searchParams.get("text") === "boi"
        ? [device(BOILER, "boiler")] : [], total: 1, limit: 20, offset: 0 }),
      [`PUT /api/v1/twin/devices/${BOILER}/location`]: () => json({ device: BOILER, deviceName: "boiler", nodeId: 7,
        place: { id: 6, kind: "Space", name: "Room 2", globalId: null } }),
      [`DELETE /api/v1/twin/devices/${BOILER}/location`]: () => json(null, 204),
    });
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    const form = await screen.findByRole("form", { name: "Map a device to a space" });
    const mapButton = within(form).getByRole("button", { name: "Map device" });
    expect(mapButton).toBeDisabled();

    await user.type(within(form).getByRole("combobox", { name: "Device" }), "boi");
    await user.click(await screen.findByRole("option", { name: "boiler" }));
    expect(mapButton).toBeDisabled(); // no place yet
    // The place is picked in the tree; the form follows.
    await user.click(await screen.findByText("Room 2 · Space"));
    expect(within(form).getByRole("combobox", { name: "Space or element" })).toHaveValue("Room 2 (Space)");
    await user.click(mapButton);
    expect(await within(form).findByText("boiler is now in Room 2.")).toBeInTheDocument();
    const put = calls.find((c) => c.method === "PUT");
    expect(put?.body).toEqual({ node: 6 });
    // The graph is asked again after a mapping (it gained or moved a Device node).
    await waitFor(() => expect(calls.filter((c) => c.url.pathname === "/api/v1/twin/graph")).toHaveLength(2));

    await user.click(screen.getByText("Room 1 · Space"));
    await user.click(await screen.findByRole("button", { name: "Remove boiler from its place" }));
    await waitFor(() => expect(calls.some((c) => c.method === "DELETE"
      && c.url.pathname === `/api/v1/twin/devices/${BOILER}/location`)).toBe(true));
  });

  it("shows the API's message when mapping is refused", async () => {
    api("operator", {
      "GET /api/v1/devices": () => json({ items: [device(BOILER, "boiler")], total: 1, limit: 20, offset: 0 }),
      [`PUT /api/v1/twin/devices/${BOILER}/location`]: () => json({ error: "conflict",
        message: "node 6 is a Storey: devices go in a Space or on an Element" }, 409),
    });
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    const form = await screen.findByRole("form", { name: "Map a device to a space" });
    await user.click(within(form).getByRole("combobox", { name: "Device" }));
    await user.click(await screen.findByRole("option", { name: "boiler" }));
    await user.click(within(form).getByRole("combobox", { name: "Space or element" }));
    await user.click(await screen.findByRole("option", { name: "Room 2 (Space)" }));
    await user.click(within(form).getByRole("button", { name: "Map device" }));
    expect(await within(form).findByRole("alert")).toHaveTextContent(
      "node 6 is a Storey: devices go in a Space or on an Element");
  });

  it.each([
    ["viewer", { import: false, map: false }],
    ["operator", { import: false, map: true }],
    ["admin", { import: true, map: true }],
  ] as const)("shows a %s only the controls it may use", async (role, may) => {
    api(role);
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    await user.click(await screen.findByText("Room 1 · Space"));
    await screen.findByRole("list", { name: "Devices in Room 1" });
    expect(screen.queryByRole("button", { name: "Import IFC" }) !== null).toBe(may.import);
    expect(screen.queryByRole("form", { name: "Map a device to a space" }) !== null).toBe(may.map);
    expect(screen.queryByRole("button", { name: "Remove boiler from its place" }) !== null).toBe(may.map);
  });

  it("says why when the plan has no digital twin, without a pointless retry", async () => {
    mockApi({ ...signedInAs("admin"), "GET /api/v1/twin/graph": () => json({ error: "feature_not_licensed",
      message: "the digital twin is not included in the free plan (free mode)" }, 402) });
    renderAt(<TwinPage />, { path: "/twin" });
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The digital twin is unavailable");
    expect(alert).toHaveTextContent("the digital twin is not included in the free plan (free mode)");
    expect(within(alert).queryByRole("button", { name: "Retry" })).not.toBeInTheDocument();
  });
});
