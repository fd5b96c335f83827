import { afterEach, describe, expect, it, vi } from "vitest";

import { api, ApiError, buildQuery, tokens } from "./client";
import { json, mockApi } from "../test/fetchMock";

const pair = (n: number) => ({ access_token: `access-${n}`, refresh_token: `refresh-${n}`, expires_in: 900 });

afterEach(() => tokens.clear());

describe("api client", () => {
  it("sends the access token and decodes JSON", async () => {
    tokens.set(pair(1));
    const { calls } = mockApi({ "GET /api/v1/things": () => json({ ok: 1 }) });
    await expect(api("/api/v1/things", { query: { a: "x", skip: undefined, n: 0 } })).resolves.toEqual({ ok: 1 });
    expect(calls[0]?.headers.authorization).toBe("Bearer access-1");
    expect(calls[0]?.url.search).toBe("?a=x&n=0");
  });

  it("refreshes once on 401 and retries with the new token", async () => {
    tokens.set(pair(1));
    const { calls } = mockApi({
      "GET /api/v1/things": (c) =>
        c.headers.authorization === "Bearer access-2" ? json([1, 2]) : json({ error: "unauthorized",
          message: "access token invalid or expired" }, 401),
      "POST /api/v1/auth/refresh": () => json(pair(2)),
    });
    await expect(api("/api/v1/things")).resolves.toEqual([1, 2]);
    expect(calls.map((c) => `${c.method} ${c.url.pathname}`)).toEqual([
      "GET /api/v1/things", "POST /api/v1/auth/refresh", "GET /api/v1/things"]);
    expect(calls[1]?.body).toEqual({ refresh_token: "refresh-1" });
    expect(tokens.refreshToken).toBe("refresh-2");
  });

  it("shares one refresh between parallel 401s (refresh tokens rotate)", async () => {
    tokens.set(pair(1));
    const { calls } = mockApi({
      "GET /api/v1/a": (c) => (c.headers.authorization === "Bearer access-2" ? json("a") :
        json({ error: "unauthorized", message: "expired" }, 401)),
      "POST /api/v1/auth/refresh": () => json(pair(2)),
    });
    await Promise.all([api("/api/v1/a"), api("/api/v1/a"), api("/api/v1/a")]);
    expect(calls.filter((c) => c.url.pathname === "/api/v1/auth/refresh")).toHaveLength(1);
  });

  it("ends the session when the refresh is refused, without looping", async () => {
    tokens.set(pair(1));
    const events: string[] = [];
    const unsubscribe = tokens.subscribe((e) => events.push(e));
    const { calls } = mockApi({
      "GET /api/v1/things": () => json({ error: "unauthorized", message: "session ended" }, 401),
      "POST /api/v1/auth/refresh": () => json({ error: "unauthorized", message: "refresh token invalid" }, 401),
    });
    const err = await api("/api/v1/things").catch((e: unknown) => e);
    unsubscribe();
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toBe("session ended");
    expect(calls).toHaveLength(2);
    expect(events).toEqual(["expired"]);
    expect(tokens.accessToken).toBeNull();
    expect(tokens.refreshToken).toBeNull();
  });

  it("maps the API's {error, message} to ApiError", async () => {
    mockApi({ "POST /api/v1/devices": () => json({ error: "validation_error", message: "name: bad",
      details: [{ loc: ["body", "name"], msg: "bad" }] }, 422) });
    const err = (await api("/api/v1/devices", { method: "POST", body: {} }).catch((e: unknown) => e)) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect([err.status, err.error, err.message]).toEqual([422, "validation_error", "name: bad"]);
    expect(err.details).toEqual([{ loc: ["body", "name"], msg: "bad" }]);
  });

  it("maps non-JSON failures and network errors to readable messages", async () => {
    mockApi({ "GET /x": () => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }) });
    await expect(api("/x")).rejects.toMatchObject({ status: 502, error: "http_error",
      message: "Bad Gateway (HTTP 502)" });
    vi.stubGlobal("fetch", vi.fn(() => Promise.reject(new TypeError("Failed to fetch"))));
    await expect(api("/x")).rejects.toMatchObject({ status: 0, error: "network_error" });
  });

  it("returns undefined for 204 and never refreshes anonymous calls", async () => {
    const { calls } = mockApi({
      "DELETE /api/v1/things/1": () => json(null, 204),
      "POST /api/v1/auth/login": () => json({ error: "unauthorized", message: "wrong email or password" }, 401),
    });
    await expect(api("/api/v1/things/1", { method: "DELETE" })).resolves.toBeUndefined();
    await expect(api("/api/v1/auth/login", { method: "POST", body: {}, anonymous: true }))
      .rejects.toMatchObject({ message: "wrong email or password" });
    expect(calls.some((c) => c.url.pathname.endsWith("/refresh"))).toBe(false);
  });

  it("builds repeated parameters for arrays and drops empty values", () => {
    expect(buildQuery({ d: ["a", "b"], e: "", f: null })).toBe("?d=a&d=b");
    expect(buildQuery({})).toBe("");
  });
});

/** Stands in for XMLHttpRequest (jsdom's would try the network): replies with queued responses in order. */
class FakeXhr {
  static replies: { status: number; body: string }[] = [];
  static sent: { method: string; url: string; headers: Record<string, string> }[] = [];
  status = 0;
  statusText = "";
  responseText = "";
  upload: { onprogress: ((e: { lengthComputable: boolean; loaded: number; total: number }) => void) | null } =
    { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;
  private method = "";
  private url = "";
  private headers: Record<string, string> = {};
  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(k: string, v: string) {
    this.headers[k.toLowerCase()] = v;
  }
  getResponseHeader() {
    return "application/json";
  }
  abort() {
    this.onabort?.();
  }
  send() {
    FakeXhr.sent.push({ method: this.method, url: this.url, headers: this.headers });
    const reply = FakeXhr.replies.shift()!;
    setTimeout(() => {
      this.upload.onprogress?.({ lengthComputable: true, loaded: 50, total: 100 });
      this.upload.onprogress?.({ lengthComputable: true, loaded: 100, total: 100 });
      this.status = reply.status;
      this.responseText = reply.body;
      this.onload?.();
    }, 0);
  }
}

describe("upload", () => {
  it("reports progress, sends the token, refreshes once on 401 and maps errors", async () => {
    const { upload } = await import("./client");
    vi.stubGlobal("XMLHttpRequest", FakeXhr);
    FakeXhr.sent = [];
    tokens.set(pair(1));
    mockApi({ "POST /api/v1/auth/refresh": () => json(pair(2)) });
    FakeXhr.replies = [
      { status: 401, body: JSON.stringify({ error: "unauthorized", message: "expired" }) },
      { status: 202, body: JSON.stringify({ id: 7 }) },
    ];
    const progress: number[] = [];
    await expect(upload("/api/v1/twin/imports", new FormData(), { onProgress: (f) => progress.push(f) }))
      .resolves.toEqual({ id: 7 });
    expect(FakeXhr.sent.map((s) => s.headers.authorization)).toEqual(["Bearer access-1", "Bearer access-2"]);
    expect(progress.slice(-2)).toEqual([0.5, 1]);

    FakeXhr.replies = [{ status: 413, body: JSON.stringify({ error: "payload_too_large", message: "file too large" }) }];
    await expect(upload("/api/v1/twin/imports", new FormData())).rejects
      .toMatchObject({ status: 413, message: "file too large" });
  });
});
