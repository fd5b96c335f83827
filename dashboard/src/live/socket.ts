// One WebSocket to `/ws` shared by every live view (see src/iotistic/cloud/routers/live.py for the protocol).
// The access token goes in the first message (browsers cannot set headers on a WebSocket; URLs end up in logs).
// Views subscribe to devices; the socket subscribes to the union (all metrics) and filters per view here, so two
// views wanting different metrics of one device never overwrite each other's server-side filter.

import { refreshSession, tokens } from "../api/client";

export interface Reading {
  device: string;
  metric: string;
  /** ISO 8601 UTC */
  ts: string;
  value: number;
  unit: string | null;
}

export type LiveStatus = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface LiveSubscription {
  devices: string[];
  /** Only these metrics; all when omitted. */
  metrics?: string[];
  onReading: (r: Reading) => void;
}

type ServerMessage =
  | { type: "authenticated"; role: string }
  | { type: "subscribed"; devices: string[] }
  | ({ type: "reading" } & Reading)
  | { type: "error"; message: string };

const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
const MAX_BACKOFF_MS = 30_000;

export type SocketFactory = (url: string) => WebSocket;

export class LiveSocket {
  private ws: WebSocket | null = null;
  private subs = new Set<LiveSubscription>();
  private watched = new Set<string>();
  private statusListeners = new Set<(s: LiveStatus, error: string | null) => void>();
  private _status: LiveStatus = "idle";
  private _error: string | null = null;
  private attempts = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private authRetried = false;

  constructor(
    private readonly url: () => string = defaultUrl,
    private readonly factory: SocketFactory = (u) => new WebSocket(u),
  ) {}

  get status(): LiveStatus {
    return this._status;
  }

  get error(): string | null {
    return this._error;
  }

  onStatus(listener: (s: LiveStatus, error: string | null) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  subscribe(sub: LiveSubscription): () => void {
    this.subs.add(sub);
    if (!this.ws && !this.retryTimer) this.connect();
    else this.sync();
    return () => {
      this.subs.delete(sub);
      if (this.subs.size === 0) this.shutdown();
      else this.sync();
    };
  }

  private setStatus(s: LiveStatus, error: string | null = null): void {
    this._status = s;
    this._error = error;
    for (const l of this.statusListeners) l(s, error);
  }

  private wanted(): Set<string> {
    const all = new Set<string>();
    for (const s of this.subs) for (const d of s.devices) all.add(d);
    return all;
  }

  private connect(): void {
    this.setStatus(this.attempts === 0 ? "connecting" : "reconnecting", this._error);
    const ws = this.factory(this.url());
    this.ws = ws;
    this.watched = new Set();
    ws.onopen = async () => {
      let token = tokens.accessToken;
      if (!token && (await refreshSession())) token = tokens.accessToken;
      if (this.ws !== ws) return;
      if (!token) {
        ws.close(1000);
        this.setStatus("closed", "not signed in");
        return;
      }
      ws.send(JSON.stringify({ type: "auth", token }));
    };
    ws.onmessage = (e: MessageEvent) => this.handle(ws, e.data);
    ws.onclose = (e: CloseEvent) => void this.closed(ws, e.code, e.reason);
  }

  private handle(ws: WebSocket, data: unknown): void {
    if (this.ws !== ws || typeof data !== "string") return;
    let msg: ServerMessage;
    try {
      msg = JSON.parse(data) as ServerMessage;
    } catch {
      return;
    }
    switch (msg.type) {
      case "authenticated":
        this.attempts = 0;
        this.authRetried = false;
        this.setStatus("open");
        this.sync();
        break;
      case "reading":
        for (const s of [...this.subs]) {
          if (s.devices.includes(msg.device) && (!s.metrics || s.metrics.includes(msg.metric))) s.onReading(msg);
        }
        break;
      case "error":
        this.setStatus(this._status, msg.message);
        break;
      case "subscribed":
        break;
    }
  }

  private async closed(ws: WebSocket, code: number, reason: string): Promise<void> {
    if (this.ws !== ws) return;
    this.ws = null;
    if (this.subs.size === 0) {
      this.setStatus("idle");
      return;
    }
    if (code === CLOSE_FORBIDDEN) {
      this.setStatus("closed", reason || "not allowed");
      return;
    }
    if (code === CLOSE_UNAUTHORIZED) {
      // The access token expired since it was issued: refresh once, then give up (the session really ended).
      if (!this.authRetried && (await refreshSession())) {
        this.authRetried = true;
        this.connect();
        return;
      }
      this.setStatus("closed", reason || "session ended");
      tokens.expire();
      return;
    }
    this.attempts += 1;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.attempts, 6));
    this.setStatus("reconnecting", reason || "connection lost");
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.subs.size > 0) this.connect();
    }, delay);
  }

  /** Bring the server's device set in line with what the views want. */
  private sync(): void {
    const ws = this.ws;
    if (!ws || this._status !== "open") return;
    const want = this.wanted();
    const add = [...want].filter((d) => !this.watched.has(d));
    const drop = [...this.watched].filter((d) => !want.has(d));
    if (drop.length) ws.send(JSON.stringify({ type: "unsubscribe", devices: drop }));
    if (add.length) ws.send(JSON.stringify({ type: "subscribe", devices: add }));
    this.watched = want;
  }

  private shutdown(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    this.ws = null;
    this.attempts = 0;
    ws?.close(1000);
    this.setStatus("idle");
  }
}

function defaultUrl(): string {
  const { protocol, host } = window.location;
  return `${protocol === "https:" ? "wss:" : "ws:"}//${host}/ws`;
}

export const liveSocket = new LiveSocket();
