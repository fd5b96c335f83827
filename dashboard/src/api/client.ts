// The one way the dashboard talks to the cloud API: JSON over fetch with the access token, a single refresh on
// 401, and every failure turned into an ApiError carrying the API's own `{error, message}`.

export class ApiError extends Error {
  readonly status: number;
  readonly error: string;
  readonly details: unknown;

  constructor(status: number, error: string, message: string, details?: unknown) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.error = error;
    this.details = details;
  }
}

/** What to show a person for any thrown value: the API's message when there is one. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error && err.message) return err.message;
  return "Something went wrong.";
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type?: string;
  expires_in: number;
}

// The API takes the refresh token in the request body (no cookie), so an httpOnly cookie is not available. The
// access token lives only in memory; the refresh token in sessionStorage so a reload keeps the login, scoped to
// this tab and gone when it closes. Refresh tokens rotate on every use and logout revokes the session server-side.
const REFRESH_KEY = "iotistic.refresh";

type SessionListener = (event: "tokens" | "expired") => void;

class TokenStore {
  private access: string | null = null;
  private listeners = new Set<SessionListener>();

  get accessToken(): string | null {
    return this.access;
  }

  get refreshToken(): string | null {
    try {
      return sessionStorage.getItem(REFRESH_KEY);
    } catch {
      return null;
    }
  }

  set(pair: TokenPair): void {
    this.access = pair.access_token;
    try {
      sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
    } catch {
      // Storage refused (private mode quotas): the login still works until the page is reloaded.
    }
    this.emit("tokens");
  }

  clear(): void {
    this.access = null;
    try {
      sessionStorage.removeItem(REFRESH_KEY);
    } catch {
      // nothing stored
    }
  }

  expire(): void {
    this.clear();
    this.emit("expired");
  }

  subscribe(listener: SessionListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: "tokens" | "expired"): void {
    for (const l of this.listeners) l(event);
  }
}

export const tokens = new TokenStore();

export type QueryValue = string | number | boolean | null | undefined | readonly (string | number)[];

export function buildQuery(query?: Record<string, QueryValue>): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) {
      for (const v of value) params.append(key, String(v));
    } else {
      params.append(key, String(value));
    }
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  query?: Record<string, QueryValue>;
  /** JSON-encoded unless it is FormData or a Blob. */
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Send without the access token and never refresh (login, setup, refresh itself). */
  anonymous?: boolean;
}

async function toApiError(res: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    // body unreadable: fall back to the status line
  }
  if (text) {
    try {
      const body = JSON.parse(text) as { error?: unknown; message?: unknown; details?: unknown };
      if (body && typeof body === "object" && typeof body.message === "string") {
        return new ApiError(res.status, typeof body.error === "string" ? body.error : "error", body.message,
          body.details);
      }
    } catch {
      // not JSON (a proxy's HTML page): use the status line below
    }
  }
  const reason = res.statusText || (res.status >= 500 ? "server error" : "request failed");
  return new ApiError(res.status, "http_error", `${reason} (HTTP ${res.status})`);
}

let refreshing: Promise<boolean> | null = null;

/** Exchange the refresh token for a new pair. Concurrent callers share one request: tokens rotate, so a second
 *  parallel refresh with the same token would be refused and log the user out. */
export function refreshSession(): Promise<boolean> {
  refreshing ??= (async () => {
    const refreshToken = tokens.refreshToken;
    if (!refreshToken) return false;
    try {
      const res = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ refresh_token: refreshToken }),
      });
      if (!res.ok) return false;
      tokens.set((await res.json()) as TokenPair);
      return true;
    } catch {
      return false;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function encodeBody(body: unknown, headers: Record<string, string>): BodyInit | undefined {
  if (body === undefined) return undefined;
  if (body instanceof FormData || body instanceof Blob) return body;
  headers["Content-Type"] = "application/json";
  return JSON.stringify(body);
}

/** A request with the session's access token; on 401 the session is refreshed once and the request retried. */
export async function apiFetch(path: string, opts: RequestOptions = {}): Promise<Response> {
  const send = async (): Promise<Response> => {
    const headers: Record<string, string> = { Accept: "application/json", ...opts.headers };
    const token = tokens.accessToken;
    if (!opts.anonymous && token) headers.Authorization = `Bearer ${token}`;
    try {
      return await fetch(path + buildQuery(opts.query), {
        method: opts.method ?? "GET",
        headers,
        body: encodeBody(opts.body, headers),
        signal: opts.signal,
      });
    } catch (err) {
      if (err instanceof DOMException && err.name === "AbortError") throw err;
      throw new ApiError(0, "network_error", "Cannot reach the Iotistic server. Check your connection.");
    }
  };

  let res = await send();
  if (res.status === 401 && !opts.anonymous) {
    if (await refreshSession()) {
      res = await send();
    }
    if (res.status === 401) {
      const err = await toApiError(res);
      tokens.expire();
      throw err;
    }
  }
  if (!res.ok) throw await toApiError(res);
  return res;
}

/** JSON in, JSON out; `undefined` for 204. */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await apiFetch(path, opts);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("Content-Type") ?? "";
  if (!type.includes("json")) return (await res.text()) as T;
  return (await res.json()) as T;
}

/** Save a response as a file (the browser's download), e.g. a device's VPN configuration. */
export async function download(path: string, fallbackName: string): Promise<void> {
  const res = await apiFetch(path, { headers: { Accept: "*/*" } });
  const disposition = res.headers.get("Content-Disposition") ?? "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  // Revoking at once can cancel the download in some browsers; a minute is plenty for it to start.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export interface UploadOptions {
  method?: "POST" | "PUT";
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** A multipart upload with progress (fetch cannot report upload progress; XMLHttpRequest can). Refreshes once
 *  on 401 like `api`. */
export async function upload<T>(path: string, form: FormData, opts: UploadOptions = {}): Promise<T> {
  const once = () =>
    new Promise<{ status: number; text: string; statusText: string; type: string }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(opts.method ?? "POST", path);
      xhr.setRequestHeader("Accept", "application/json");
      const token = tokens.accessToken;
      if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) opts.onProgress?.(e.loaded / e.total);
      };
      xhr.onload = () =>
        resolve({ status: xhr.status, text: xhr.responseText, statusText: xhr.statusText,
          type: xhr.getResponseHeader("Content-Type") ?? "" });
      xhr.onerror = () =>
        reject(new ApiError(0, "network_error", "Cannot reach the Iotistic server. Check your connection."));
      xhr.onabort = () => reject(new DOMException("upload aborted", "AbortError"));
      opts.signal?.addEventListener("abort", () => xhr.abort(), { once: true });
      xhr.send(form);
    });
  let r = await once();
  if (r.status === 401 && (await refreshSession())) r = await once();
  const res = new Response(r.text || null, { status: r.status, statusText: r.statusText,
    headers: { "Content-Type": r.type } });
  if (r.status === 401) {
    const err = await toApiError(res);
    tokens.expire();
    throw err;
  }
  if (!res.ok) throw await toApiError(res);
  return (r.type.includes("json") ? JSON.parse(r.text) : r.text) as T;
}
