import { afterEach, describe, expect, it, vi } from "vitest";

import { tokens } from "../api/client";
import { json, mockApi } from "../test/fetchMock";
import { LiveSocket, type Reading } from "./socket";

/** A stand-in for the browser's WebSocket: records what the client sends, lets the test play the server. */
class FakeSocket {
  static all: FakeSocket[] = [];
  sent: unknown[] = [];
  closedWith: number | null = null;
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedWith = code;
  }
  server(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop(code: number, reason = "") {
    this.onclose?.({ code, reason });
  }
}

const flush = () => new Promise((r) => setTimeout(r, 0));
const make = () => new LiveSocket(() => "ws://test/ws", (u) => new FakeSocket(u) as unknown as WebSocket);
const reading = (device: string, metric: string, value: number): Reading =>
  ({ device, metric, value, ts: "2025-01-01T00:00:00Z", unit: null });

afterEach(() => {
  FakeSocket.all = [];
  tokens.clear();
  vi.useRealTimers();
});

describe("LiveSocket", () => {
  it("authenticates with the token in the first message, then subscribes to the union of devices", async () => {
    tokens.set({ access_token: "tok", refresh_token: "r", expires_in: 60 });
    const live = make();
    const a: Reading[] = [];
    const b: Reading[] = [];
    live.subscribe({ devices: ["d1"], onReading: (r) => a.push(r) });
    live.subscribe({ devices: ["d1", "d2"], metrics: ["temp"], onReading: (r) => b.push(r) });
    const ws = FakeSocket.all[0]!;
    expect(FakeSocket.all).toHaveLength(1);
    ws.onopen?.();
    await flush();
    expect(ws.sent).toEqual([{ type: "auth", token: "tok" }]);
    ws.server({ type: "authenticated", role: "viewer" });
    expect(live.status).toBe("open");
    expect(ws.sent[1]).toEqual({ type: "subscribe", devices: ["d1", "d2"] });

    ws.server({ type: "reading", ...reading("d1", "cpu", 5) });
    ws.server({ type: "reading", ...reading("d2", "temp", 21) });
    expect(a.map((r) => r.metric)).toEqual(["cpu"]);
    expect(b.map((r) => `${r.device}/${r.metric}`)).toEqual(["d2/temp"]);
  });

  it("unsubscribes devices nobody watches and closes when the last view leaves", async () => {
    tokens.set({ access_token: "tok", refresh_token: "r", expires_in: 60 });
    const live = make();
    const off1 = live.subscribe({ devices: ["d1"], onReading: () => undefined });
    const off2 = live.subscribe({ devices: ["d2"], onReading: () => undefined });
    const ws = FakeSocket.all[0]!;
    ws.onopen?.();
    await flush();
    ws.server({ type: "authenticated", role: "viewer" });
    off1();
    expect(ws.sent.at(-1)).toEqual({ type: "unsubscribe", devices: ["d1"] });
    off2();
    expect(ws.closedWith).toBe(1000);
    expect(live.status).toBe("idle");
  });

  it("refreshes the token once when the server refuses it (4401), then reconnects", async () => {
    tokens.set({ access_token: "old", refresh_token: "r1", expires_in: 60 });
    mockApi({ "POST /api/v1/auth/refresh": () => json({ access_token: "new", refresh_token: "r2", expires_in: 60 }) });
    const live = make();
    live.subscribe({ devices: ["d1"], onReading: () => undefined });
    FakeSocket.all[0]!.drop(4401, "access token invalid or expired");
    await flush();
    await flush();
    const second = FakeSocket.all[1]!;
    expect(second).toBeDefined();
    second.onopen?.();
    await flush();
    expect(second.sent[0]).toEqual({ type: "auth", token: "new" });
  });

  it("ends the session when 4401 persists after a refresh", async () => {
    tokens.set({ access_token: "old", refresh_token: "r1", expires_in: 60 });
    mockApi({ "POST /api/v1/auth/refresh": () => json({ error: "unauthorized", message: "nope" }, 401) });
    const events: string[] = [];
    const off = tokens.subscribe((e) => events.push(e));
    const live = make();
    live.subscribe({ devices: ["d1"], onReading: () => undefined });
    FakeSocket.all[0]!.drop(4401, "session ended");
    await flush();
    await flush();
    off();
    expect(live.status).toBe("closed");
    expect(live.error).toBe("session ended");
    expect(events).toContain("expired");
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("reconnects with backoff after a dropped connection", async () => {
    vi.useFakeTimers();
    tokens.set({ access_token: "tok", refresh_token: "r", expires_in: 60 });
    const live = make();
    live.subscribe({ devices: ["d1"], onReading: () => undefined });
    FakeSocket.all[0]!.drop(1006);
    await vi.advanceTimersByTimeAsync(0);
    expect(live.status).toBe("reconnecting");
    expect(FakeSocket.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.all).toHaveLength(2);
  });
});
