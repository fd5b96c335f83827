import { describe, expect, it } from "vitest";

import { fromLocalInput, rangeError, rangeToParams, toLocalInput } from "./timeRange";

const now = new Date("2026-03-10T12:00:00.000Z");

describe("time range to query parameters", () => {
  it("turns a preset into from/to ending now, with the default maxPoints and no bucket", () => {
    expect(rangeToParams({ kind: "relative", seconds: 3600 }, now)).toEqual({
      from: "2026-03-10T11:00:00.000Z", to: "2026-03-10T12:00:00.000Z", maxPoints: 300,
    });
    expect(rangeToParams({ kind: "relative", seconds: 7 * 86400 }, now).from).toBe("2026-03-03T12:00:00.000Z");
  });

  it("keeps a custom range as given and passes an explicit bucket, or 0 for raw readings", () => {
    const range = { kind: "absolute" as const, from: new Date("2026-01-01T00:00:00Z"),
      to: new Date("2026-01-02T00:00:00Z") };
    expect(rangeToParams(range, now, { bucket: 3600, maxPoints: 50 })).toEqual({
      from: "2026-01-01T00:00:00.000Z", to: "2026-01-02T00:00:00.000Z", maxPoints: 50, bucket: 3600,
    });
    expect(rangeToParams(range, now, { bucket: 0 }).bucket).toBe(0);
  });

  it("clamps maxPoints to what the API accepts (2 to 5000)", () => {
    expect(rangeToParams({ kind: "relative", seconds: 60 }, now, { maxPoints: 1 }).maxPoints).toBe(2);
    expect(rangeToParams({ kind: "relative", seconds: 60 }, now, { maxPoints: 99999 }).maxPoints).toBe(5000);
  });

  it("refuses what the API would refuse, saying why", () => {
    const at = (from: string, to: string) => ({ kind: "absolute" as const, from: new Date(from), to: new Date(to) });
    expect(rangeError(at("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"))).toBe("The start must be before the end.");
    expect(rangeError(at("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))).toBe("The start must be before the end.");
    expect(rangeError(at("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))).toBe(
      "The range may span at most 400 days.");
    expect(rangeError(at("1969-12-31T00:00:00Z", "1970-01-02T00:00:00Z"))).toBe("The start must not be before 1970.");
    expect(rangeError({ kind: "absolute", from: new Date(Number.NaN), to: now })).toBe("Enter a valid start time.");
    expect(rangeError({ kind: "relative", seconds: 401 * 86400 })).toBe("The range may span at most 400 days.");
    expect(rangeError(at("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))).toBeNull();
    expect(() => rangeToParams(at("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"), now)).toThrow(
      "The start must be before the end.");
    // 30 days in 1-second buckets would be 2.6 million points: the API allows 5000.
    expect(() => rangeToParams({ kind: "relative", seconds: 30 * 86400 }, now, { bucket: 1 })).toThrow(
      /too small for this range/);
    expect(rangeToParams({ kind: "relative", seconds: 30 * 86400 }, now, { bucket: 600 }).bucket).toBe(600);
  });

  it("reads and writes datetime-local values in local time", () => {
    const d = new Date(2026, 2, 10, 9, 5);
    expect(toLocalInput(d)).toBe("2026-03-10T09:05");
    expect(fromLocalInput("2026-03-10T09:05").getTime()).toBe(d.getTime());
    expect(Number.isNaN(fromLocalInput("").getTime())).toBe(true);
    expect(Number.isNaN(fromLocalInput("10/03/2026").getTime())).toBe(true);
  });
});
