import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Suspense } from "react";
import { describe, expect, it, vi } from "vitest";

import type { Release } from "../../api/fleets";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { RequireAuth } from "../../auth/RequireAuth";
import { renderAt, signedInAs } from "../../test/render";
import { fromRelease, parseEnvironment, toDocument } from "./draft";
import FleetsArea from "./index";

/** The /fleets area at `url` as the app mounts it: behind the login (so the role is known) and, its pages being
 *  lazy, under a Suspense boundary like the shell's. */
/** Bodies the page POSTed to `path`, in order. */
function posted(calls: Call[], path: string): unknown[] {
  return calls.filter((c) => c.method === "POST" && c.url.pathname === path).map((c) => c.body);
}

function renderArea(url: string) {
  return renderAt(<RequireAuth><Suspense fallback={null}><FleetsArea /></Suspense></RequireAuth>,
    { path: url, pattern: "/fleets/*" });
}

configure({ asyncUtilTimeout: 5000 });
// A whole form of MUI fields re-rendered in jsdom on a shared CI machine: seconds, not milliseconds.
vi.setConfig({ testTimeout: 30_000 });

type User = ReturnType<typeof userEvent.setup>;

/** Pasting instead of typing key by key: the editor is a big form and jsdom is slow. */
async function fill(user: User, field: HTMLElement, text: string) {
  await user.clear(field);
  await user.click(field);
  await user.paste(text);
}

const existing: Release = {
  id: 3, name: "api-v2", fleetId: 2, notes: null, createdBy: "op@example.com", createdAt: "2026-02-01T10:00:00Z",
  document: { apps: { "5": { appId: 5, appName: "api", services: [{ serviceId: 1, serviceName: "api",
    imageName: "registry/api:2", state: "paused", config: { image: "registry/api:2", command: ["serve", "--port", "80"],
      environment: { MODE: "prod", EMPTY: "" }, ports: ["80:80"], volumes: [], restart: "on-failure",
      labels: { tier: "api" }, probes: { liveness: { httpPath: "/health", port: 80 } } } }] } },
  config: { LOG_LEVEL: 3 } },
};

describe("release draft", () => {
  it("round-trips a release, keeping the fields the editor does not show", () => {
    const doc = toDocument(fromRelease(existing));
    const service = doc.apps["5"]?.services[0];
    expect(service?.config).toEqual({ image: "registry/api:2", command: ["serve", "--port", "80"],
      environment: { MODE: "prod", EMPTY: "" }, ports: ["80:80"], volumes: [], restart: "on-failure",
      labels: { tier: "api" }, probes: { liveness: { httpPath: "/health", port: 80 } } });
    expect(service?.state).toBe("paused");
    expect(doc.config).toEqual({ LOG_LEVEL: 3 });
  });

  it("reads environment lines and commands as people type them", () => {
    expect(parseEnvironment("A=1\n\nB = x=y\nC")).toEqual({ A: "1", B: " x=y", C: "" });
    const draft = fromRelease(existing);
    const service = draft.apps[0]!.services[0]!;
    service.command = "sh -c 'echo hi'";
    service.ports = " 8080:80 \n\n443/tcp";
    const config = toDocument(draft).apps["5"]!.services[0]!.config;
    expect(config.command).toBe("sh -c 'echo hi'");
    expect(config.ports).toEqual(["8080:80", "443/tcp"]);
    service.command = "";
    expect(toDocument(draft).apps["5"]!.services[0]!.config).not.toHaveProperty("command");
  });
});

const ENV_MESSAGE = "an environment variable name uses letters, digits and '_' and does not start with a digit";

describe("release editor", () => {
  it("shows each of the API's validation messages next to its field, and saves once they are fixed", async () => {
    const user = userEvent.setup();
    const { calls } = mockApi({ ...signedInAs("operator"),
      "GET /api/v1/fleets": () => json([{ id: 2, name: "east", description: null, deviceCount: 0,
        createdAt: "2026-01-01T00:00:00Z" }]),
      "POST /api/v1/releases": (c) => {
        const body = c.body as { target: { apps: Record<string, { services: { config: { ports: string[] } }[] }> } };
        const ports = body.target.apps["1"]?.services[0]?.config.ports ?? [];
        if (ports.includes("99999:80")) {
          return json({ error: "validation_error", message: "body.target.apps.1.services.0.config.ports: Value error, " +
            "port '99999:80': 99999 is not between 1 and 65535 (and 2 more)", details: [
            { loc: ["body", "target", "apps", "1", "services", 0, "config", "ports"],
              msg: "Value error, port '99999:80': 99999 is not between 1 and 65535" },
            { loc: ["body", "target", "apps", "1", "services", 0, "config", "environment", "1X", "[key]"],
              msg: ENV_MESSAGE },
            { loc: ["body", "target", "config"], msg: "Input should be a valid dictionary" },
          ] }, 422);
        }
        return json({ ...existing, id: 11, name: "web-v2" }, 201);
      },
    });
    renderArea("/fleets/releases/new");
    await fill(user, await screen.findByRole("textbox", { name: "Release name" }), "web-v2");
    await fill(user, screen.getByRole("textbox", { name: "App name" }), "web");
    await fill(user, screen.getByRole("textbox", { name: "Service name" }), "nginx");
    await fill(user, screen.getByRole("textbox", { name: "Image" }), "nginx:1.27");
    await fill(user, screen.getByRole("textbox", { name: "Ports" }), "99999:80");
    await fill(user, screen.getByRole("textbox", { name: "Environment" }), "1X=y");
    await user.click(screen.getByRole("button", { name: "Save release" }));

    const ports = screen.getByRole("textbox", { name: "Ports" });
    await waitFor(() => expect(ports).toHaveAttribute("aria-invalid", "true"));
    expect(ports).toHaveAccessibleDescription("port '99999:80': 99999 is not between 1 and 65535");
    expect(screen.getByRole("textbox", { name: "Environment" }))
      .toHaveAccessibleDescription(ENV_MESSAGE);
    expect(screen.getByRole("textbox", { name: "Image" })).not.toHaveAttribute("aria-invalid", "true");
    // A problem no field shows is listed with the summary, not lost.
    expect(screen.getByTestId("release-errors")).toHaveTextContent("target.config: Input should be a valid dictionary");
    expect(screen.getByTestId("location")).toHaveTextContent("/fleets/releases/new");

    await fill(user, ports, "8080:80");
    await fill(user, screen.getByRole("textbox", { name: "Environment" }), "MODE=prod");
    await user.click(screen.getByRole("button", { name: "Save release" }));
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent("/fleets/releases/11"));
    const sent = posted(calls, "/api/v1/releases").at(-1);
    expect(sent).toEqual({ name: "web-v2", fleet: null, notes: null, target: { config: {}, apps: { "1": {
      appId: 1, appName: "web", services: [{ serviceId: 1, serviceName: "nginx", state: "running", config: {
        image: "nginx:1.27", environment: { MODE: "prod" }, ports: ["8080:80"], volumes: [],
        restart: "unless-stopped" } }] } } } });
  });

  it("starts a new release from an existing one and adds services and apps with fresh ids", async () => {
    const user = userEvent.setup();
    const { calls } = mockApi({ ...signedInAs("operator"),
      "GET /api/v1/fleets": () => json([{ id: 2, name: "east", description: null, deviceCount: 0,
        createdAt: "2026-01-01T00:00:00Z" }]),
      "GET /api/v1/releases/3": () => json(existing),
      "POST /api/v1/releases": () => json({ ...existing, id: 12 }, 201),
    });
    renderArea("/fleets/releases/new?from=3");
    expect(await screen.findByRole("textbox", { name: "Release name" })).toHaveValue("api-v2 (copy)");
    expect(screen.getByText(/Starting from api-v2/)).toBeInTheDocument();
    expect(screen.getByRole("textbox", { name: "Command" })).toHaveValue('["serve","--port","80"]');

    await user.click(screen.getByRole("button", { name: "Add service" }));
    const fieldsets = screen.getAllByRole("group");
    const added = fieldsets[fieldsets.length - 1]!;
    expect(within(added).getByRole("spinbutton", { name: "Service id" })).toHaveValue(2);
    await fill(user, within(added).getByRole("textbox", { name: "Service name" }), "cache");
    await fill(user, within(added).getByRole("textbox", { name: "Image" }), "redis:7");
    await user.click(screen.getByRole("button", { name: "Add app" }));
    const apps = screen.getAllByRole("region", { name: /^App / });
    expect(within(apps[1]!).getByRole("spinbutton", { name: "App id" })).toHaveValue(6);
    await user.click(within(apps[1]!).getByRole("button", { name: "Remove app" }));

    await user.click(screen.getByRole("button", { name: "Save release" }));
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent("/fleets/releases/12"));
    const body = posted(calls, "/api/v1/releases")[0] as { fleet: number; target: { apps: Record<string, {
      services: { serviceName: string; config: Record<string, unknown> }[] }> } };
    expect(body.fleet).toBe(2);
    expect(Object.keys(body.target.apps)).toEqual(["5"]);
    expect(body.target.apps["5"]?.services.map((s) => s.serviceName)).toEqual(["api", "cache"]);
    expect(body.target.apps["5"]?.services[0]?.config.probes).toEqual({ liveness: { httpPath: "/health", port: 80 } });
  });

  it("points to the marked fields when every problem has one", async () => {
    const user = userEvent.setup();
    mockApi({ ...signedInAs("operator"),
      "GET /api/v1/fleets": () => json([]),
      "POST /api/v1/releases": () => json({ error: "validation_error",
        message: "body.target.apps.1.services.0.config.image: an image reference has no spaces", details: [
          { loc: ["body", "target", "apps", "1", "services", 0, "config", "image"],
            msg: "an image reference has no spaces (e.g. nginx:1.27 or registry.example.com/app:2)" }] }, 422),
    });
    renderArea("/fleets/releases/new");
    await fill(user, await screen.findByRole("textbox", { name: "Image" }), "ng inx");
    await user.click(screen.getByRole("button", { name: "Save release" }));
    expect(await screen.findByTestId("release-errors"))
      .toHaveTextContent("The release was not saved: see the fields marked below.");
    expect(screen.getByRole("textbox", { name: "Image" }))
      .toHaveAccessibleDescription("an image reference has no spaces (e.g. nginx:1.27 or registry.example.com/app:2)");
  });

  it("refuses two apps with one id before asking the API", async () => {
    const user = userEvent.setup();
    const { calls } = mockApi({ ...signedInAs("operator"), "GET /api/v1/fleets": () => json([]) });
    renderArea("/fleets/releases/new");
    await user.click(await screen.findByRole("button", { name: "Add app" }));
    const second = screen.getAllByRole("spinbutton", { name: "App id" })[1]!;
    await fill(user, second, "1");
    await user.click(screen.getByRole("button", { name: "Save release" }));
    expect(await screen.findByText("two apps have the id 1; each app needs its own id")).toBeInTheDocument();
    expect(posted(calls, "/api/v1/releases")).toEqual([]);
  });

  it("is not offered to a viewer", async () => {
    mockApi({ ...signedInAs("viewer"), "GET /api/v1/fleets": () => json([]) });
    renderArea("/fleets/releases/new");
    expect(await screen.findByText("Operators and above create releases")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Save release" })).not.toBeInTheDocument();
  });
});
