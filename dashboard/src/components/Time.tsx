const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const STEPS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["second", 60], ["minute", 60], ["hour", 24], ["day", 30], ["month", 12], ["year", Infinity],
];

/** "3 minutes ago" for an ISO time, relative to `now`. */
export function relativeTime(iso: string, now = Date.now()): string {
  let value = (Date.parse(iso) - now) / 1000;
  for (const [unit, size] of STEPS) {
    if (Math.abs(value) < size) return rtf.format(Math.round(value), unit);
    value /= size;
  }
  return rtf.format(Math.round(value), "year");
}

export function absoluteTime(iso: string): string {
  return new Date(iso).toLocaleString();
}

/** A time shown relative, with the exact time on hover and for screen readers (the <time> element). */
export function Time({ iso, fallback = "never" }: { iso: string | null | undefined; fallback?: string }) {
  if (!iso) return <>{fallback}</>;
  return <time dateTime={iso} title={absoluteTime(iso)}>{relativeTime(iso)}</time>;
}
