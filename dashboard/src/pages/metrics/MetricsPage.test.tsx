import { act, configure, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

import { json, mockApi, type Call } from "../../test/fetchMock";
import { renderAt, signedInAs } from "../../test/render";
import MetricsPage from "./MetricsPage";

configure({ asyncUtilTimeout: 5000 });

const A = "a".repeat(32);
const B = "b".repeat(32);
const device = (uuid: string, name: string) => ({ id: 1, uuid, name, deviceType: "sensor", status: "active",
  online: true, fleet: null, tags: {}, lastSeenAt: null, osVersion: null, agentVersion: null, ipAddress: null,
  createdAt: "2026-01-01T00:00:00Z" });
const metricList = [{ metric: "temp", ts: "2026-03-10T12:00:00Z", value: 21, unit: "°C" },
  { metric: "humidity", ts: "2026-03-10T12:00:00Z", value: 40, unit: "%" }];

/** The API's answer for one series: two buckets at the start of the asked range. */
function series(call: Call) {
  const p = call.url.searchParams;
  const device = call.url.pathname.split("/")[4];
  const start = Date.parse(p.get("from") ?? "");
  const bucket = Number(p.get("bucket") ?? 60);
  const value = device === A ? 20 : 30;
  if (bucket === 0) {
    return json({ device, metric: p.get("metric"), from: p.get("from"), to: p.get("to"), bucket: 0,
      readings: [{ ts: new Date(Date.now() - 20_000).toISOString(), value }, {
        ts: new Date(Date.now() - 10_000).toISOString(), value: value + 1 }], truncated: false });
  }
  return json({ device, metric: p.get("metric"), from: p.get("from"), to: p.get("to"), bucket,
    buckets: [{ ts: new Date(start).toISOString(), avg: value, min: value, max: value, count: 1 },
      { ts: new Date(start + bucket * 1000).toISOString(), avg: value + 1, min: value, max: value + 2, count: 3 }] });
}

function routes(extra: Parameters<typeof mockApi>[0] = {}) {
  return mockApi({ ...signedInAs("viewer"),
    [`GET /api/v1/devices/${A}`]: () => json(device(A, "boiler")),
    [`GET /api/v1/devices/${B}`]: () => json(device(B, "pump")),
    [`GET /api/v1/devices/${A}/telemetry/metrics`]: () => json(metricList),
    [`GET /api/v1/devices/${B}/telemetry/metrics`]: () => json(metricList.slice(0, 1)),
    [`GET /api/v1/devices/${A}/telemetry`]: series,
    [`GET /api/v1/devices/${B}/telemetry`]: series,
    "GET /api/v1/devices": () => json({ items: [device(A, "boiler"), device(B, "pump")], total: 2, limit: 20,
      offset: 0 }),
    ...extra });
}

const seriesCalls = (calls: Call[]) => calls.filter((c) => c.url.pathname.endsWith("/telemetry"));

// recharts measures its container; jsdom has no layout, so the observer reports a fixed size.
class FixedResizeObserver {
  constructor(private readonly cb: ResizeObserverCallback) {}
  observe(target: Element) {
    this.cb([{ target, contentRect: { width: 600, height: 260 } } as unknown as ResizeObserverEntry],
      this as unknown as ResizeObserver);
  }
  unobserve() {}
  disconnect() {}
}

beforeEach(() => {
  vi.stubGlobal("ResizeObserver", FixedResizeObserver);
});

describe("metrics page: history", () => {
  it("asks every chosen device and metric over the range, and charts them per metric", async () => {
    const { calls } = routes();
    const user = userEvent.setup();
    renderAt(<MetricsPage />, { path: `/metrics?device=${A}&device=${B}&metric=temp&view=history` });
    const chart = await screen.findByTestId("chart-temp");
    const asked = seriesCalls(calls);
    expect(asked.map((c) => c.url.pathname).sort()).toEqual([`/api/v1/devices/${A}/telemetry`,
      `/api/v1/devices/${B}/telemetry`]);
    for (const c of asked) {
      const p = c.url.searchParams;
      expect(p.get("metric")).toBe("temp");
      expect(p.get("maxPoints")).toBe("300");
      expect(p.has("bucket")).toBe(false);
      expect(Date.parse(p.get("to") ?? "") - Date.parse(p.get("from") ?? "")).toBe(3600_000);
    }
    // Two devices' buckets at the same instants merge into two rows; one line per device.
    expect(chart).toHaveAttribute("data-points", "2");
    expect(within(chart).getByText("temp (°C)")).toBeInTheDocument();
    expect(within(chart).getByText("Latest: boiler 21 °C, pump 31 °C")).toBeInTheDocument();
    expect(screen.queryByTestId("chart-humidity")).not.toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "24 h" }));
    await waitFor(() => expect(seriesCalls(calls).length).toBe(4));
    const day = seriesCalls(calls)[3].url.searchParams;
    expect(Date.parse(day.get("to") ?? "") - Date.parse(day.get("from") ?? "")).toBe(86_400_000);

    await user.click(screen.getByRole("combobox", { name: "Bucket" }));
    await user.click(await screen.findByRole("option", { name: "5 minutes" }));
    await waitFor(() => expect(seriesCalls(calls).length).toBe(6));
    expect(seriesCalls(calls)[5].url.searchParams.get("bucket")).toBe("300");
  });

  it("without chosen metrics charts all of them; a custom range is checked before it is asked", async () => {
    const { calls } = routes();
    const user = userEvent.setup();
    renderAt(<MetricsPage />, { path: `/metrics?device=${A}&view=history` });
    expect(await screen.findByTestId("chart-humidity")).toBeInTheDocument();
    expect(screen.getByTestId("chart-temp")).toBeInTheDocument();
    const before = seriesCalls(calls).length;

    await user.click(screen.getByRole("button", { name: "Custom" }));
    const from = screen.getByLabelText("From");
    const to = screen.getByLabelText("To");
    await user.clear(from);
    await user.type(from, "2026-03-10T12:00");
    await user.clear(to);
    await user.type(to, "2026-03-09T12:00");
    expect(screen.getByText("The start must be before the end.")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Apply" })).toBeDisabled();
    await user.clear(to);
    await user.type(to, "2026-03-11T12:00");
    await user.click(screen.getByRole("button", { name: "Apply" }));
    await waitFor(() => expect(seriesCalls(calls).length).toBe(before + 2));
    const p = seriesCalls(calls).at(-1)?.url.searchParams;
    expect(p?.get("from")).toBe(new Date(2026, 2, 10, 12, 0).toISOString());
    expect(p?.get("to")).toBe(new Date(2026, 2, 11, 12, 0).toISOString());
  });

  it("shows the API's message for a series it refuses", async () => {
    routes({ [`GET /api/v1/devices/${A}/telemetry`]: () => json({ error: "validation_error",
      message: "bucket too small for this range: at most 5000 buckets (use at least 18 s)" }, 422) });
    renderAt(<MetricsPage />, { path: `/metrics?device=${A}&metric=temp&view=history` });
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Some series could not be loaded");
    expect(alert).toHaveTextContent("bucket too small for this range: at most 5000 buckets (use at least 18 s)");
  });

  it("asks to choose devices first, and picks them by searching", async () => {
    routes();
    const user = userEvent.setup();
    renderAt(<MetricsPage />, { path: "/metrics?view=history" });
    expect(await screen.findByText("Choose devices")).toBeInTheDocument();
    await user.click(screen.getByRole("combobox", { name: "Devices" }));
    await user.click(await screen.findByRole("option", { name: "pump" }));
    expect(screen.getByTestId("location")).toHaveTextContent(`device=${B}`);
    expect(await screen.findByTestId("chart-temp")).toBeInTheDocument();
  });
});

/** The browser's WebSocket, played by the test. */
class FakeSocket {
  static all: FakeSocket[] = [];
  sent: { type: string; devices?: string[] }[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
    setTimeout(() => this.onopen?.(), 0);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {}
  server(msg: unknown) {
    act(() => this.onmessage?.({ data: JSON.stringify(msg) }));
  }
}

describe("metrics page: live", () => {
  it("starts from the last stored readings, then moves with each live reading", async () => {
    FakeSocket.all = [];
    vi.stubGlobal("WebSocket", FakeSocket);
    const { calls } = routes();
    renderAt(<MetricsPage />, { path: `/metrics?device=${A}&metric=temp` });
    // The seed: raw readings of the live window (5 minutes by default).
    const chart = await screen.findByTestId("chart-temp");
    await waitFor(() => expect(chart).toHaveAttribute("data-points", "2"));
    const seed = seriesCalls(calls)[0].url.searchParams;
    expect(seed.get("bucket")).toBe("0");
    expect(seed.get("newest")).toBe("true"); // the readings just before now, not the window's first ones
    expect(Date.parse(seed.get("to") ?? "") - Date.parse(seed.get("from") ?? "")).toBe(301_000);

    await waitFor(() => expect(FakeSocket.all).toHaveLength(1));
    const ws = FakeSocket.all[0];
    await waitFor(() => expect(ws.sent[0]).toEqual({ type: "auth", token: "test-access" }));
    ws.server({ type: "authenticated", role: "viewer" });
    expect(ws.sent[1]).toEqual({ type: "subscribe", devices: [A] });
    expect(await within(screen.getByRole("status", { name: "Live connection" })).findByText("Live"))
      .toBeInTheDocument();

    ws.server({ type: "reading", device: A, metric: "temp", ts: new Date().toISOString(), value: 25.5, unit: "°C" });
    // Another metric than the one chosen is not drawn.
    ws.server({ type: "reading", device: A, metric: "humidity", ts: new Date().toISOString(), value: 50,
      unit: "%" });
    await waitFor(() => expect(chart).toHaveAttribute("data-points", "3"), { timeout: 3000 });
    expect(within(chart).getByText("Latest: boiler 25.50 °C")).toBeInTheDocument();
    expect(screen.queryByTestId("chart-humidity")).not.toBeInTheDocument();
  });
});
