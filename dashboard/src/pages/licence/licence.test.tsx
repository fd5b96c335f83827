import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";

import type { Licence } from "../../api/licence";
import type { Role } from "../../api/types";
import { RequireAuth } from "../../auth/RequireAuth";
import { json, mockApi } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import LicencePage from "./LicencePage";

configure({ asyncUtilTimeout: 5000 });
vi.setConfig({ testTimeout: 20_000 });

type Routes = Parameters<typeof mockApi>[0];

const NOW = Date.parse("2026-03-01T12:00:00Z");

const trial: Licence = {
  mode: "licensed", plan: "starter", customerId: "cust_42",
  features: { maxDevices: 10, retentionDays: 30, hasDedicatedPrometheus: false, digitalTwin: true, vpn: false },
  limits: { maxDevices: 10, retentionDays: 30 },
  trial: { isTrial: true, expiresAt: NOW / 1000 + 5 * 86400 - 60 },
  subscription: { status: "trialing" },
  expiresAt: "2026-03-31T12:00:00Z", reason: null, usage: { devices: 9, maxDevices: 10 },
};

const free: Licence = {
  mode: "free", plan: "free", customerId: null, features: { maxDevices: 3, retentionDays: 7, digitalTwin: false,
    vpn: false, hasDedicatedPrometheus: false }, limits: { maxDevices: 3, retentionDays: 7 }, trial: {},
  subscription: {}, expiresAt: null, reason: "no licence installed", usage: { devices: 3, maxDevices: 3 },
};

function open(role: Role, routes: Routes) {
  const api = mockApi({ ...signedInAs(role), ...routes });
  renderAt(<RequireAuth><LicencePage /></RequireAuth>);
  return api;
}

afterEach(() => vi.useRealTimers());

describe("licence", () => {
  it("shows plan, trial, features and usage against the limits", async () => {
    vi.useFakeTimers({ now: NOW, toFake: ["Date"] });
    open("viewer", { "GET /api/v1/license": () => json(trial) });
    expect(await screen.findByRole("heading", { name: "Licence & plan" })).toBeInTheDocument();
    expect(screen.getByText("starter")).toBeInTheDocument();
    expect(screen.getByText(/Trial: ends on .* \(5 days left\)/)).toBeInTheDocument();
    expect(screen.getByText("9 of 10 devices")).toBeInTheDocument();
    expect(screen.getByRole("progressbar", { name: "Devices used: 9 of 10" })).toHaveAttribute("aria-valuenow", "90");
    expect(screen.getByText("30 days")).toBeInTheDocument();
    expect(screen.getByText("cust_42")).toBeInTheDocument();
    expect(screen.getByText("trialing")).toBeInTheDocument();
    const features = screen.getByRole("list", { name: "Features" });
    const item = (name: string) => within(features).getByText(name).closest("li") as HTMLElement;
    expect(item("Digital twin")).toHaveTextContent("included");
    expect(item("Device VPN")).toHaveTextContent("not included");
    // A viewer reads the licence but cannot install one.
    expect(screen.queryByRole("textbox", { name: "Licence token" })).not.toBeInTheDocument();
  });

  it("says why the instance is in free mode and when the device limit is reached", async () => {
    open("admin", { "GET /api/v1/license": () => json(free) });
    expect(await screen.findByText("Running in free mode: no licence installed. Install a licence to use your plan."))
      .toBeInTheDocument();
    expect(screen.getByText(/device limit is reached/)).toBeInTheDocument();
    expect(screen.queryByText(/Trial/)).not.toBeInTheDocument();
    // Installing is the owner's.
    expect(screen.queryByRole("button", { name: "Install licence" })).not.toBeInTheDocument();
  });

  it("lets an owner install a licence, showing the API's refusal first", async () => {
    const user = userEvent.setup();
    const { calls } = open("owner", {
      "GET /api/v1/license": () => json(free),
      "PUT /api/v1/license": (c) => ((c.body as { token: string }).token === "eyJ.good.sig"
        ? json({ ...trial, plan: "professional", mode: "licensed", trial: {}, usage: { devices: 3, maxDevices: 50 } })
        : json({ error: "invalid_license", message: "licence invalid: Signature verification failed" }, 422)),
    });
    const token = await screen.findByRole("textbox", { name: "Licence token" });
    expect(screen.getByRole("button", { name: "Install licence" })).toBeDisabled();
    await user.type(token, "eyJ.forged.sig");
    await user.click(screen.getByRole("button", { name: "Install licence" }));
    const form = screen.getByRole("region", { name: "Install a licence" });
    expect(await within(form).findByRole("alert")).toHaveTextContent("licence invalid: Signature verification failed");

    await user.clear(token);
    await user.type(token, "  eyJ.good.sig\n");
    await user.click(screen.getByRole("button", { name: "Install licence" }));
    expect(await screen.findByText(/Licence installed: plan professional/)).toBeInTheDocument();
    // The page shows the new licence at once, from the API's answer.
    await waitFor(() => expect(screen.getByText("3 of 50 devices")).toBeInTheDocument());
    expect(screen.queryByText(/free mode/)).not.toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT").map((c) => c.body))
      .toEqual([{ token: "eyJ.forged.sig" }, { token: "eyJ.good.sig" }]);
  });

  it("shows the API's error when the licence cannot be read", async () => {
    open("viewer", { "GET /api/v1/license": () => json({ error: "internal_error", message: "internal server error" },
      500) });
    expect(await screen.findByRole("alert")).toHaveTextContent("internal server error");
  });
});
