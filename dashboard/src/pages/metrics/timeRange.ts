/** Time ranges of the history view and the query parameters of `GET /devices/{uuid}/telemetry`. */

export type TimeRange =
  | { kind: "relative"; seconds: number }
  | { kind: "absolute"; from: Date; to: Date };

export interface Preset {
  label: string;
  seconds: number;
}

const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const PRESETS: readonly Preset[] = [
  { label: "15 min", seconds: 15 * MINUTE },
  { label: "1 h", seconds: HOUR },
  { label: "6 h", seconds: 6 * HOUR },
  { label: "24 h", seconds: DAY },
  { label: "7 d", seconds: 7 * DAY },
  { label: "30 d", seconds: 30 * DAY },
];

/** The API's limits (services/telemetry.py and routers/telemetry.py): checked here so the form can say why. */
export const MAX_RANGE_SECONDS = 400 * DAY;
export const MAX_POINTS = 5000;
export const DEFAULT_MAX_POINTS = 300;

export interface SeriesParams {
  from: string;
  to: string;
  maxPoints: number;
  bucket?: number;
}

/** Why the range cannot be asked for, or null. */
export function rangeError(range: TimeRange): string | null {
  if (range.kind === "relative") {
    if (!Number.isFinite(range.seconds) || range.seconds <= 0) return "Choose a range.";
    return range.seconds > MAX_RANGE_SECONDS ? "The range may span at most 400 days." : null;
  }
  const from = range.from.getTime();
  const to = range.to.getTime();
  if (Number.isNaN(from)) return "Enter a valid start time.";
  if (Number.isNaN(to)) return "Enter a valid end time.";
  if (from < 0) return "The start must not be before 1970.";
  if (from >= to) return "The start must be before the end.";
  if ((to - from) / 1000 > MAX_RANGE_SECONDS) return "The range may span at most 400 days.";
  return null;
}

/** Start and end of the range; a relative range ends `now`. */
export function resolveRange(range: TimeRange, now: Date): { from: Date; to: Date } {
  if (range.kind === "absolute") return { from: range.from, to: range.to };
  return { from: new Date(now.getTime() - range.seconds * 1000), to: now };
}

/** Query parameters for a range; `bucket` (seconds, 0 for raw readings) is left to the API (`maxPoints`) unless
 * given. Throws a RangeError saying what is wrong. */
export function rangeToParams(
  range: TimeRange,
  now: Date,
  options: { maxPoints?: number; bucket?: number } = {},
): SeriesParams {
  const error = rangeError(range);
  if (error !== null) throw new RangeError(error);
  const { from, to } = resolveRange(range, now);
  const maxPoints = Math.min(Math.max(Math.round(options.maxPoints ?? DEFAULT_MAX_POINTS), 2), MAX_POINTS);
  const params: SeriesParams = { from: from.toISOString(), to: to.toISOString(), maxPoints };
  if (options.bucket === 0) {
    params.bucket = 0; // raw readings
  } else if (options.bucket !== undefined) {
    const span = (to.getTime() - from.getTime()) / 1000;
    // Same rule as the API: at most MAX_POINTS buckets overlap the range.
    if (!(options.bucket > 0) || span / options.bucket + 1 > MAX_POINTS) {
      throw new RangeError(`Buckets of ${options.bucket} s are too small for this range (at most ${MAX_POINTS}).`);
    }
    params.bucket = Math.round(options.bucket);
  }
  return params;
}

/** `<input type="datetime-local">` value in local time, and back. */
export function toLocalInput(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

export function fromLocalInput(value: string): Date {
  // "YYYY-MM-DDTHH:mm" without a zone is local time in the Date constructor.
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value) ? new Date(value) : new Date(Number.NaN);
}
