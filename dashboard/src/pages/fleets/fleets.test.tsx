import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Suspense } from "react";
import { describe, expect, it, vi } from "vitest";

import type { Fleet, Release, Rollout } from "../../api/fleets";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { RequireAuth } from "../../auth/RequireAuth";
import { renderAt, signedInAs } from "../../test/render";
import FleetsArea from "./index";

/** The /fleets area at `url` as the app mounts it: behind the login (so the role is known) and, its pages being
 *  lazy, under a Suspense boundary like the shell's. */
function posted(calls: Call[], path: string): unknown[] {
  return calls.filter((c) => c.method === "POST" && c.url.pathname === path).map((c) => c.body);
}

function renderArea(url: string) {
  return renderAt(<RequireAuth><Suspense fallback={null}><FleetsArea /></Suspense></RequireAuth>,
    { path: url, pattern: "/fleets/*" });
}

// Lazy pages load on first use; a cold transform of MUI can take longer than the default second.
configure({ asyncUtilTimeout: 5000 });
// Forms of MUI fields typed into key by key in jsdom, on a shared CI machine: seconds per test.
vi.setConfig({ testTimeout: 20_000 });

const north: Fleet = { id: 1, name: "north", description: "Northern sites", deviceCount: 2,
  createdAt: "2026-01-01T00:00:00Z" };

const release: Release = {
  id: 7, name: "web-v1", fleetId: 1, notes: "first", createdBy: "op@example.com", createdAt: "2026-02-01T10:00:00Z",
  document: { apps: { "1": { appId: 1, appName: "web", services: [{ serviceId: 1, serviceName: "nginx",
    state: "running", config: { image: "nginx:1.27", ports: ["8080:80"], environment: { MODE: "prod" },
      volumes: ["data:/data"], restart: "always", labels: { tier: "front" } } }] } }, config: { LOG: "info" } },
};

function rollout(summary: Partial<Rollout["summary"]>, items: Rollout["items"] = []): Rollout {
  return { releaseId: 7, summary: { failed: 0, offline: 0, updating: 0, other_release: 0, converged: 0, ...summary },
    items, total: items.length, limit: 25, offset: 0 };
}


describe("fleets page", () => {
  it("lists fleets and releases; an admin gets every control", async () => {
    mockApi({ ...signedInAs("admin"),
      "GET /api/v1/fleets": () => json([north]),
      "GET /api/v1/releases": () => json([release]),
    });
    renderArea("/fleets");
    const fleets = await screen.findByRole("table", { name: "Fleets" });
    expect(within(fleets).getByRole("link", { name: "north" })).toHaveAttribute("href", "/fleets/1");
    const releases = await screen.findByRole("table", { name: "Releases" });
    expect(within(releases).getByRole("link", { name: "web-v1" })).toHaveAttribute("href", "/fleets/releases/7");
    expect(within(releases).getByText("north")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "New fleet" })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "New release" })).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Delete fleet north" })).toBeInTheDocument();
  });

  it("shows a viewer no buttons it cannot use, an operator only releases", async () => {
    const routes = { "GET /api/v1/fleets": () => json([north]), "GET /api/v1/releases": () => json([release]) };
    mockApi({ ...signedInAs("viewer"), ...routes });
    const { unmount } = renderArea("/fleets");
    await screen.findByRole("table", { name: "Fleets" });
    expect(screen.queryByRole("button", { name: "New fleet" })).not.toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "New release" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Delete fleet/ })).not.toBeInTheDocument();
    expect(screen.queryByRole("columnheader", { name: "Actions" })).not.toBeInTheDocument();
    unmount();

    mockApi({ ...signedInAs("operator"), ...routes });
    renderArea("/fleets");
    await screen.findByRole("table", { name: "Fleets" });
    expect(screen.getByRole("link", { name: "New release" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "New fleet" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Delete fleet/ })).not.toBeInTheDocument();
  });

  it("has empty and error states with the API's message", async () => {
    mockApi({ ...signedInAs("admin"),
      "GET /api/v1/fleets": () => json([]),
      "GET /api/v1/releases": () => json({ error: "internal_error", message: "database unavailable" }, 503),
    });
    renderArea("/fleets");
    expect(await screen.findByText("No fleets yet")).toBeInTheDocument();
    expect(await screen.findByRole("alert")).toHaveTextContent("database unavailable");
  });

  it("creates a fleet and shows the API's validation message next to the name", async () => {
    const user = userEvent.setup();
    let fleets: Fleet[] = [];
    const { calls } = mockApi({ ...signedInAs("admin"),
      "GET /api/v1/fleets": () => json(fleets),
      "GET /api/v1/releases": () => json([]),
      "POST /api/v1/fleets": (c) => {
        const body = c.body as { name: string };
        if (body.name.includes(" ")) {
          const msg = "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64 characters)";
          return json({ error: "validation_error", message: `body.name: ${msg}`,
            details: [{ loc: ["body", "name"], msg }] }, 422);
        }
        fleets = [{ ...north, id: 2, name: body.name, deviceCount: 0 }];
        return json(fleets[0], 201);
      },
    });
    renderArea("/fleets");
    await user.click(await screen.findByRole("button", { name: "New fleet" }));
    const dialog = await screen.findByRole("dialog", { name: "New fleet" });
    await user.type(within(dialog).getByRole("textbox", { name: "Name" }), "south site");
    await user.click(within(dialog).getByRole("button", { name: "Create fleet" }));
    expect(await within(dialog).findByText(/starting with a letter or digit/)).toBeInTheDocument();
    expect(within(dialog).getByRole("textbox", { name: "Name" })).toHaveAttribute("aria-invalid", "true");

    await user.clear(within(dialog).getByRole("textbox", { name: "Name" }));
    await user.type(within(dialog).getByRole("textbox", { name: "Name" }), "south");
    await user.click(within(dialog).getByRole("button", { name: "Create fleet" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(await screen.findByRole("link", { name: "south" })).toBeInTheDocument();
    expect(posted(calls, "/api/v1/fleets")).toEqual([
      { name: "south site", description: null }, { name: "south", description: null }]);
  });

  it("keeps the delete dialog open with the API's reason when a fleet is in use", async () => {
    const user = userEvent.setup();
    mockApi({ ...signedInAs("admin"),
      "GET /api/v1/fleets": () => json([north]),
      "GET /api/v1/releases": () => json([]),
      "DELETE /api/v1/fleets/1": () => json({ error: "conflict",
        message: "fleet 'north' still has 2 devices and 0 active provisioning keys" }, 409),
    });
    renderArea("/fleets");
    await user.click(await screen.findByRole("button", { name: "Delete fleet north" }));
    const dialog = await screen.findByRole("dialog");
    await user.click(within(dialog).getByRole("button", { name: "Delete" }));
    expect(await within(dialog).findByRole("alert")).toHaveTextContent("still has 2 devices");
  });
});

describe("release page", () => {
  it("deploys to a fleet and then watches that fleet's devices converge", async () => {
    const user = userEvent.setup();
    const { calls } = mockApi({ ...signedInAs("operator"),
      "GET /api/v1/fleets": () => json([north]),
      "GET /api/v1/releases/7": () => json(release),
      "POST /api/v1/releases/7/deploy": () => json({ releaseId: 7, devices: ["a", "b"], count: 2 }),
      "GET /api/v1/releases/7/rollout": (c) => json(c.url.searchParams.get("fleet") === "north"
        ? rollout({ converged: 1, updating: 1 }, [
          { uuid: "b", name: "gate-2", online: true, targetVersion: 3, targetReleaseId: 7, appliedVersion: 2,
            status: "applying", reportedAt: "2026-02-01T10:01:00Z", state: "updating" },
          { uuid: "a", name: "gate-1", online: true, targetVersion: 3, targetReleaseId: 7, appliedVersion: 3,
            status: "applied", reportedAt: "2026-02-01T10:01:00Z", state: "converged" }])
        : rollout({})),
    });
    renderArea("/fleets/releases/7");
    expect(await screen.findByRole("heading", { name: "web-v1", level: 1 })).toBeInTheDocument();
    const services = screen.getByRole("table", { name: "Services" });
    expect(within(services).getByText("nginx:1.27")).toBeInTheDocument();
    expect(await screen.findByText("No devices in this selection")).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Deploy" }));
    const dialog = await screen.findByRole("dialog", { name: "Deploy web-v1" });
    // The release's own fleet is preselected.
    expect(within(dialog).getByRole("combobox", { name: "Fleet" })).toHaveTextContent("north");
    await user.click(within(dialog).getByRole("button", { name: "Deploy" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(posted(calls, "/api/v1/releases/7/deploy")).toEqual([{ fleet: "north" }]);
    expect(screen.getByText(/Deployed to 2 devices/)).toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent("/fleets/releases/7?fleet=north"));
    expect(await screen.findByTestId("rollout-progress")).toHaveTextContent("1 of 2 devices converged");
    const table = screen.getByRole("table", { name: "Rollout devices" });
    const rows = within(table).getAllByRole("row").slice(1);
    expect(rows.map((r) => within(r).getAllByRole("cell")[0]?.textContent)).toEqual(["gate-2", "gate-1"]);
    expect(within(rows[0]!).getByText("v2")).toBeInTheDocument();
  });

  it("filters the rollout by state and refuses a deploy without a selection", async () => {
    const user = userEvent.setup();
    const { calls } = mockApi({ ...signedInAs("operator"),
      "GET /api/v1/fleets": () => json([north]),
      "GET /api/v1/releases/7": () => json({ ...release, fleetId: null }),
      "GET /api/v1/releases/7/rollout": () => json(rollout({ failed: 1, converged: 4 })),
      "POST /api/v1/releases/7/deploy": () => json({ error: "bad_request", message: "tag must be key or key:value" },
        400),
    });
    renderArea("/fleets/releases/7?tag=site:berlin");
    await user.click(await screen.findByRole("button", { name: "failed 1" }));
    await waitFor(() => expect(calls.some((c) => c.url.searchParams.get("state") === "failed")).toBe(true));
    expect(calls.filter((c) => c.url.pathname.endsWith("/rollout")).every(
      (c) => c.url.searchParams.get("tag") === "site:berlin")).toBe(true);

    await user.click(screen.getByRole("button", { name: "Deploy" }));
    const dialog = await screen.findByRole("dialog");
    await user.click(within(dialog).getByRole("button", { name: "Deploy" }));
    expect(within(dialog).getByText("Choose a fleet or a tag to deploy to.")).toBeInTheDocument();
    expect(posted(calls, "/api/v1/releases/7/deploy")).toEqual([]);
    await user.type(within(dialog).getByRole("textbox", { name: "Tag" }), ":x");
    await user.click(within(dialog).getByRole("button", { name: "Deploy" }));
    expect(await within(dialog).findByRole("alert")).toHaveTextContent("tag must be key or key:value");
  });

  it("watches the devices of a chosen fleet and tag, kept in the address", async () => {
    const user = userEvent.setup();
    const { calls } = mockApi({ ...signedInAs("viewer"),
      "GET /api/v1/fleets": () => json([north]),
      "GET /api/v1/releases/7": () => json(release),
      "GET /api/v1/releases/7/rollout": () => json(rollout({ other_release: 3 })),
    });
    renderArea("/fleets/releases/7");
    expect(await screen.findByText(/devices running this release;/)).toBeInTheDocument();
    const form = screen.getByRole("form", { name: "Devices to watch" });
    await user.click(within(form).getByRole("combobox", { name: "Watch fleet" }));
    await user.click(await screen.findByRole("option", { name: "north" }));
    await user.type(within(form).getByRole("textbox", { name: "Watch tag" }), "ring:canary");
    await user.click(within(form).getByRole("button", { name: "Show" }));
    await waitFor(() => expect(screen.getByTestId("location"))
      .toHaveTextContent("/fleets/releases/7?fleet=north&tag=ring%3Acanary"));
    expect(await screen.findByText(/fleet north with tag ring:canary;/)).toBeInTheDocument();
    const last = calls.filter((c) => c.url.pathname.endsWith("/rollout")).at(-1)!.url.searchParams;
    expect([last.get("fleet"), last.get("tag")]).toEqual(["north", "ring:canary"]);
    expect(screen.getByTestId("rollout-progress")).toHaveTextContent("No device here has this release deployed");
    expect(screen.getByText("3 devices run another release")).toBeInTheDocument();
  });

  it("gives a viewer the rollout but no deploy or edit", async () => {
    mockApi({ ...signedInAs("viewer"),
      "GET /api/v1/fleets": () => json([north]),
      "GET /api/v1/releases/7": () => json(release),
      "GET /api/v1/releases/7/rollout": () => json(rollout({ converged: 2 })),
    });
    renderArea("/fleets/releases/7");
    expect(await screen.findByTestId("rollout-progress")).toHaveTextContent("2 of 2 devices converged");
    expect(screen.queryByRole("button", { name: "Deploy" })).not.toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "Edit as new release" })).not.toBeInTheDocument();
  });

  it("says so when the release does not exist", async () => {
    mockApi({ ...signedInAs("viewer"), "GET /api/v1/fleets": () => json([]),
      "GET /api/v1/releases/99": () => json({ error: "not_found", message: "release not found" }, 404) });
    renderArea("/fleets/releases/99");
    expect(await screen.findByRole("alert")).toHaveTextContent("release not found");
  });
});
