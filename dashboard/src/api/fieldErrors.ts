// The API's 422 lists every problem as `details: [{loc, msg}]`; forms show each one next to its field.
import { ApiError } from "./client";

export interface FieldErrors {
  /** Messages by dotted path inside the request body, e.g. `target.apps.1.services.0.config.ports`. */
  byPath: Record<string, string>;
  /** The API's summary: shown above the form when no field claims a problem. */
  message: string | null;
}

const SOURCES = new Set(["body", "query", "path"]);

/** Pydantic prefixes custom messages with "Value error, "; the reader needs only what follows. */
function clean(msg: string): string {
  return msg.replace(/^(Value|Assertion) error, /, "");
}

/** `byCode` places errors that come without `details` (e.g. `weak_password`) at a field by their error code. */
export function fieldErrors(err: unknown, byCode: Record<string, string> = {}): FieldErrors {
  if (!(err instanceof ApiError)) return { byPath: {}, message: err == null ? null : String(err) };
  const byPath: Record<string, string> = {};
  const coded = byCode[err.error];
  if (coded !== undefined && !Array.isArray(err.details)) byPath[coded] = err.message;
  if (Array.isArray(err.details)) {
    for (const d of err.details as { loc?: unknown; msg?: unknown }[]) {
      if (!Array.isArray(d.loc) || typeof d.msg !== "string") continue;
      const loc = d.loc.map(String);
      if (loc.length && SOURCES.has(loc[0] ?? "")) loc.shift();
      // A bad key inside a mapping (e.g. an environment variable name) belongs to the mapping's field.
      if (loc[loc.length - 1] === "[key]") loc.splice(-2, 2);
      const path = loc.join(".");
      byPath[path] = byPath[path] ? `${byPath[path]}; ${clean(d.msg)}` : clean(d.msg);
    }
  }
  return { byPath, message: err.message };
}

/** The message for one field: its own path, or anything reported beneath it (a port list's single entry). */
export function errorAt(errors: FieldErrors, path: string): string | undefined {
  if (errors.byPath[path]) return errors.byPath[path];
  const prefix = `${path}.`;
  const below = Object.entries(errors.byPath).filter(([p]) => p.startsWith(prefix)).map(([, m]) => m);
  return below.length ? below.join("; ") : undefined;
}

/** Problems no field shows, so the form can list them instead of losing them. */
export function unclaimed(errors: FieldErrors, claimed: string[]): string[] {
  return Object.entries(errors.byPath)
    .filter(([p]) => !claimed.some((c) => p === c || p.startsWith(`${c}.`)))
    .map(([p, m]) => (p ? `${p}: ${m}` : m));
}
