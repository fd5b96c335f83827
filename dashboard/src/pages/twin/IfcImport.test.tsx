import { act, configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { ImportJob } from "../../api/twin";
import { json, mockApi } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import TwinPage from "./TwinPage";

configure({ asyncUtilTimeout: 5000 });

/** XMLHttpRequest as far as the upload uses it; the test decides when progress and the answer come. */
class FakeXhr {
  static sent: FakeXhr[] = [];
  method = "";
  url = "";
  headers: Record<string, string> = {};
  body: FormData | null = null;
  status = 0;
  statusText = "";
  responseText = "";
  upload: { onprogress: ((e: { lengthComputable: boolean; loaded: number; total: number }) => void) | null } =
    { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name] = value;
  }
  getResponseHeader(name: string) {
    return name.toLowerCase() === "content-type" ? "application/json" : null;
  }
  send(body: FormData) {
    this.body = body;
    FakeXhr.sent.push(this);
  }
  abort() {
    this.onabort?.();
  }
  progress(loaded: number, total: number) {
    this.upload.onprogress?.({ lengthComputable: true, loaded, total });
  }
  respond(status: number, body: unknown) {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload?.();
  }
}

const job = (over: Partial<ImportJob>): ImportJob => ({
  id: "a".repeat(32), status: "queued", source: "tower.ifc", filename: "tower.ifc", sizeBytes: 2048,
  progress: { phase: "parse", percent: 0 }, report: null, error: null, createdBy: "admin@example.com",
  createdAt: "2026-03-10T12:00:00Z", finishedAt: null, ...over,
});

const report = {
  schema: "IFC4", counts: { Project: 1, Site: 1, Building: 1, Storey: 2, Space: 3, Element: 1 }, nodes: 9,
  edges: 8, source: "tower.ifc", created: { Project: 1, Site: 1, Building: 1, Storey: 2, Space: 2, Element: 1 },
  updated: { Space: 1 }, deleted: { Zone: 1 }, edgesCreated: 8, edgesDeleted: 1,
  lostMappings: [{ device: "d".repeat(32), globalId: "3vB2YO$MX4xv5uCqZZG05x" }],
  warnings: ["IfcSensor 'S-9' has no container; it is left out"],
};

const emptyGraph = { nodes: [], links: [], truncated: false };

beforeEach(() => {
  FakeXhr.sent = [];
  vi.stubGlobal("XMLHttpRequest", FakeXhr);
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
});
afterEach(() => vi.unstubAllGlobals());

async function chooseAndUpload(user: ReturnType<typeof userEvent.setup>, source?: string) {
  await user.click(await screen.findByRole("button", { name: "Import IFC" }));
  const file = new File(["ISO-10303-21;\nHEADER;"], "tower.ifc", { type: "application/octet-stream" });
  await user.upload(screen.getByLabelText("IFC file"), file);
  expect(screen.getByText("tower.ifc (21 B)")).toBeInTheDocument();
  if (source) await user.type(screen.getByLabelText("Import name (optional)"), source);
  await user.click(screen.getByRole("button", { name: "Upload" }));
  await waitFor(() => expect(FakeXhr.sent).toHaveLength(1));
  return FakeXhr.sent[0];
}

describe("IFC upload", () => {
  it("shows upload progress, then the job's progress, then the report; the graph is reloaded", async () => {
    const polls: ImportJob[] = [job({ status: "running", progress: { phase: "snapshot", percent: 55 } }),
      job({ status: "succeeded", progress: { phase: "done", percent: 100 }, report,
        finishedAt: "2026-03-10T12:00:09Z" })];
    let graphs = 0;
    mockApi({ ...signedInAs("admin"),
      "GET /api/v1/twin/graph": () => {
        graphs += 1;
        return json(graphs === 1 ? emptyGraph : { nodes: [{ id: 1, kind: "Project", name: "Tower" }], links: [],
          truncated: false });
      },
      [`GET /api/v1/twin/imports/${"a".repeat(32)}`]: () => json(polls.length > 1 ? polls.shift() : polls[0]),
    });
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    expect(await screen.findByText("No building yet")).toBeInTheDocument();

    const xhr = await chooseAndUpload(user, "north tower");
    expect(xhr.method).toBe("POST");
    expect(xhr.url).toBe("/api/v1/twin/imports");
    expect(xhr.headers.Authorization).toBe("Bearer test-access");
    expect((xhr.body?.get("file") as File).name).toBe("tower.ifc");
    expect(xhr.body?.get("source")).toBe("north tower");

    act(() => xhr.progress(40, 100));
    expect(await screen.findByText("Uploading: 40%")).toBeInTheDocument();
    expect(screen.getByRole("progressbar", { name: "Uploading" })).toHaveAttribute("aria-valuenow", "40");
    expect(screen.getByRole("button", { name: "Upload" })).toBeDisabled();

    act(() => xhr.respond(202, job({})));
    expect(await screen.findByText("Building the graph: 55%")).toBeInTheDocument();
    expect(screen.queryByText(/Uploading/)).not.toBeInTheDocument();

    const shown = await screen.findByTestId("import-report", {}, { timeout: 5000 });
    expect(within(shown).getByText("Imported tower.ifc")).toBeInTheDocument();
    expect(shown).toHaveTextContent("IFC4: 9 nodes and 8 relationships in the file; 8 links created, 1 removed.");
    const table = within(shown).getByRole("table", { name: "Nodes per type" });
    const row = (kind: string) => within(table).getByRole("row", { name: new RegExp(`^${kind}\\b`) });
    expect(within(row("Space")).getAllByRole("cell").map((c) => c.textContent)).toEqual(["3", "2", "1", "0"]);
    expect(within(row("Zone")).getAllByRole("cell").map((c) => c.textContent)).toEqual(["0", "0", "0", "1"]);
    expect(within(table).queryByRole("row", { name: /^Device/ })).not.toBeInTheDocument();
    expect(shown).toHaveTextContent("1 device mapping(s) lost");
    expect(shown).toHaveTextContent("was in 3vB2YO$MX4xv5uCqZZG05x");
    expect(shown).toHaveTextContent("1 warning(s)IfcSensor 'S-9' has no container; it is left out");

    // The finished import refreshed the graph: the new building replaces the empty state.
    expect(await screen.findByRole("treeitem", { name: /^Tower · Project/ })).toBeInTheDocument();
    expect(screen.queryByText("No building yet")).not.toBeInTheDocument();
  });

  it("shows the API's refusal of the upload", async () => {
    mockApi({ ...signedInAs("admin"), "GET /api/v1/twin/graph": () => json(emptyGraph) });
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    const xhr = await chooseAndUpload(user);
    expect(xhr.body?.get("source")).toBeNull();
    act(() => xhr.respond(422, { error: "invalid_ifc", message: "not an IFC file: the STEP header is missing" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The upload was refused");
    expect(alert).toHaveTextContent("not an IFC file: the STEP header is missing");
    expect(screen.getByRole("button", { name: "Upload" })).toBeEnabled();
  });

  it("shows why an import failed", async () => {
    mockApi({ ...signedInAs("admin"), "GET /api/v1/twin/graph": () => json(emptyGraph),
      [`GET /api/v1/twin/imports/${"a".repeat(32)}`]: () => json(job({ status: "failed",
        error: "the file uses the unsupported schema IFC2X2" })) });
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    const sent = await chooseAndUpload(user);
    act(() => sent.respond(202, job({})));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("The import failed");
    expect(alert).toHaveTextContent("the file uses the unsupported schema IFC2X2");
    expect(screen.getByText("failed")).toBeInTheDocument();
  });

  it("can cancel an upload in flight", async () => {
    mockApi({ ...signedInAs("admin"), "GET /api/v1/twin/graph": () => json(emptyGraph) });
    const user = userEvent.setup();
    renderAt(<TwinPage />, { path: "/twin" });
    const xhr = await chooseAndUpload(user);
    act(() => xhr.progress(10, 100));
    await user.click(await screen.findByRole("button", { name: "Cancel" }));
    expect(await screen.findByText("Upload cancelled.")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });
});
