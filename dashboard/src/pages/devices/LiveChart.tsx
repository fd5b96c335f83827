// recharts is heavy; this module is loaded on demand (React.lazy) so it is not in the initial bundle.
import { CartesianGrid, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

import type { Point } from "../../live/useLive";

const time = (t: number) => new Date(t).toLocaleTimeString();
const shortTime = (t: number) => new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
// Compact axis labels (325K, 1.2M) so large values fit beside the chart.
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumSignificantDigits: 4 });

/** One tick a minute across the window, so the axis reads as a clock rather than a single label. */
function minuteTicks(from: number, to: number): number[] {
  const ticks = [];
  for (let t = Math.ceil(from / 60_000) * 60_000; t <= to; t += 60_000) ticks.push(t);
  return ticks;
}

export interface LiveChartProps {
  label: string;
  points: Point[];
  unit?: string | null;
  /** The visible window: [now - windowMs, now]. */
  windowMs: number;
  now: number;
}

export default function LiveChart({ label, points, unit, windowMs, now }: LiveChartProps) {
  return (
    <div role="img" aria-label={`${label}: ${points.length} readings in the last ${Math.round(windowMs / 60000)} minutes`}
      data-testid={`live-chart-${label}`} data-points={points.length}>
      <ResponsiveContainer width="100%" height={180}>
        <LineChart data={points} margin={{ top: 8, right: 12, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" />
          <XAxis dataKey="t" type="number" domain={[now - windowMs, now]} ticks={minuteTicks(now - windowMs, now)}
            tickFormatter={shortTime} scale="time" allowDataOverflow />
          <YAxis width={64} domain={["auto", "auto"]} tickFormatter={(v: number) => compact.format(v)} />
          <Tooltip labelFormatter={(t) => time(Number(t))}
            formatter={(v) => [`${Number(v).toLocaleString()}${unit ? ` ${unit}` : ""}`, label]} />
          <Line type="monotone" dataKey="v" stroke="#1565c0" dot={false} isAnimationActive={false} strokeWidth={2} />
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}
