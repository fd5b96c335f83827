import { configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";

import { keyStatus, type ProvisioningKey } from "../../api/provisioning";
import { json, mockApi, type Call } from "../../test/fetchMock";
import { RequireAuth } from "../../auth/RequireAuth";
import { renderAt, signedInAs } from "../../test/render";
import ProvisioningKeysPage from "./ProvisioningKeysPage";

configure({ asyncUtilTimeout: 5000 });
// Forms of MUI fields typed into key by key in jsdom, on a shared CI machine: seconds per test.
vi.setConfig({ testTimeout: 20_000 });

const key: ProvisioningKey = { id: "k1", keyPrefix: "pk_abc1234", description: "greenhouse batch",
  fleet: { id: 1, name: "north" }, maxDevices: 10, devicesRegistered: 3, expiresAt: null, revokedAt: null,
  createdAt: "2026-01-01T00:00:00Z", createdBy: "admin@example.com" };
const fleets = [{ id: 1, name: "north", description: null, deviceCount: 3, createdAt: "2026-01-01T00:00:00Z" }];

/** The page as the app mounts it: behind the login, so the role is known before it renders. */
function renderPage() {
  return renderAt(<RequireAuth><ProvisioningKeysPage /></RequireAuth>);
}

function posted(calls: Call[]): unknown[] {
  return calls.filter((c) => c.method === "POST" && c.url.pathname === "/api/v1/provisioning-keys")
    .map((c) => c.body);
}

afterEach(() => vi.unstubAllGlobals());

describe("provisioning keys", () => {
  it("creates a key and shows its secret once, with a copy button", async () => {
    const user = userEvent.setup();
    const writeText = vi.fn(async () => undefined);
    // userEvent installs its own clipboard: replace it after setup so the page's call is observable.
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    let keys: ProvisioningKey[] = [];
    const { calls } = mockApi({
      ...signedInAs("admin"),
      "GET /api/v1/fleets": () => json(fleets),
      "GET /api/v1/provisioning-keys": () => json(keys),
      "POST /api/v1/provisioning-keys": () => {
        keys = [{ ...key, id: "k2", devicesRegistered: 0 }];
        return json({ ...keys[0], key: "pk_abc1234-the-whole-secret" }, 201);
      },
    });
    renderPage();
    expect(await screen.findByText("No provisioning keys")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "New key" }));
    const dialog = await screen.findByRole("dialog", { name: "New provisioning key" });
    await user.type(within(dialog).getByRole("textbox", { name: "Description" }), "greenhouse batch");
    await user.click(within(dialog).getByRole("combobox", { name: "Fleet" }));
    await user.click(await screen.findByRole("option", { name: "north" }));
    await user.type(within(dialog).getByRole("spinbutton", { name: "Maximum devices" }), "10");
    await user.click(within(dialog).getByRole("button", { name: "Create key" }));

    const secret = await screen.findByRole("dialog", { name: "Provisioning key created" });
    expect(within(secret).getByRole("textbox", { name: "Provisioning key" })).toHaveValue("pk_abc1234-the-whole-secret");
    expect(within(secret).getByText(/only time/)).toBeInTheDocument();
    expect(within(secret).getByText(/into fleet north, up to 10/)).toBeInTheDocument();
    await user.click(within(secret).getByRole("button", { name: "Copy" }));
    expect(writeText).toHaveBeenCalledWith("pk_abc1234-the-whole-secret");
    expect(await within(secret).findByText("Copied to the clipboard.")).toBeInTheDocument();
    expect(posted(calls)).toEqual([{ description: "greenhouse batch", fleet: 1, maxDevices: 10, expiresAt: null }]);

    await user.click(within(secret).getByRole("button", { name: "I have copied it" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    // Gone for good: the list shows only the prefix.
    expect(await screen.findByText("pk_abc1234…")).toBeInTheDocument();
    expect(screen.queryByText(/the-whole-secret/)).not.toBeInTheDocument();
  });

  it("shows the API's message next to the field it concerns", async () => {
    const user = userEvent.setup();
    mockApi({
      ...signedInAs("admin"),
      "GET /api/v1/fleets": () => json(fleets),
      "GET /api/v1/provisioning-keys": () => json([]),
      "POST /api/v1/provisioning-keys": (c) => ((c.body as { maxDevices: number | null }).maxDevices === 0
        ? json({ error: "validation_error", message: "body.maxDevices: Input should be greater than or equal to 1",
          details: [{ loc: ["body", "maxDevices"], msg: "Input should be greater than or equal to 1" }] }, 422)
        : json({ error: "bad_request", message: "expiresAt must be in the future",
          details: [{ loc: ["body", "expiresAt"], msg: "must be in the future" }] }, 400)),
    });
    renderPage();
    await user.click(await screen.findByRole("button", { name: "New key" }));
    const dialog = await screen.findByRole("dialog");
    const max = within(dialog).getByRole("spinbutton", { name: "Maximum devices" });
    await user.type(max, "0");
    await user.click(within(dialog).getByRole("button", { name: "Create key" }));
    await waitFor(() => expect(max).toHaveAccessibleDescription("Input should be greater than or equal to 1"));

    await user.clear(max);
    await user.type(within(dialog).getByLabelText("Expires"), "2020-01-01T10:00");
    await user.click(within(dialog).getByRole("button", { name: "Create key" }));
    await waitFor(() => expect(within(dialog).getByLabelText("Expires"))
      .toHaveAccessibleDescription("must be in the future"));
    expect(max).toHaveAccessibleDescription("Empty: no limit");
  });

  it("revokes a key after confirmation and lists revoked keys on demand", async () => {
    const user = userEvent.setup();
    let revoked = false;
    const { calls } = mockApi({
      ...signedInAs("admin"),
      "GET /api/v1/provisioning-keys": (c) => json(c.url.searchParams.get("include_revoked") === "true" || !revoked
        ? [{ ...key, revokedAt: revoked ? "2026-03-01T00:00:00Z" : null }] : []),
      "DELETE /api/v1/provisioning-keys/k1": () => {
        revoked = true;
        return json(null, 204);
      },
    });
    renderPage();
    const table = await screen.findByRole("table", { name: "Provisioning keys" });
    expect(within(table).getByText("3 of 10")).toBeInTheDocument();
    expect(within(table).getByText("active")).toBeInTheDocument();
    await user.click(within(table).getByRole("button", { name: "Revoke key pk_abc1234" }));
    await user.click(within(await screen.findByRole("dialog")).getByRole("button", { name: "Revoke" }));
    expect(await screen.findByText("No provisioning keys")).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(calls.filter((c) => c.method === "DELETE")).toHaveLength(1);

    await user.click(screen.getByRole("switch", { name: "Show revoked keys" }));
    const all = await screen.findByRole("table", { name: "Provisioning keys" });
    expect(within(all).getByText("revoked")).toBeInTheDocument();
    expect(within(all).queryByRole("button", { name: /Revoke/ })).not.toBeInTheDocument();
  });

  it("is for admins: others see why, and no controls", async () => {
    const { calls } = mockApi({ ...signedInAs("operator") });
    renderPage();
    expect(await screen.findByRole("alert")).toHaveTextContent("Provisioning keys are managed by admins.");
    expect(screen.queryByRole("button", { name: "New key" })).not.toBeInTheDocument();
    expect(calls.some((c) => c.url.pathname === "/api/v1/provisioning-keys")).toBe(false);
  });

  it("shows the API's error when the list fails", async () => {
    mockApi({ ...signedInAs("admin"),
      "GET /api/v1/provisioning-keys": () => json({ error: "internal_error", message: "internal server error" }, 500) });
    renderPage();
    expect(await screen.findByRole("alert")).toHaveTextContent("internal server error");
  });

  it("words a key's status from its limits", () => {
    const now = Date.parse("2026-06-01T00:00:00Z");
    expect(keyStatus(key, now)).toBe("active");
    expect(keyStatus({ ...key, devicesRegistered: 10 }, now)).toBe("used up");
    expect(keyStatus({ ...key, expiresAt: "2026-05-01T00:00:00Z" }, now)).toBe("expired");
    expect(keyStatus({ ...key, revokedAt: "2026-05-01T00:00:00Z", expiresAt: "2026-05-01T00:00:00Z" }, now))
      .toBe("revoked");
  });
});
