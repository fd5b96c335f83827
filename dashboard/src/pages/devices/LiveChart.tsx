// recharts is heavy; this module is loaded on demand (React.lazy) so it is not in the initial bundle.
import { CartesianGrid, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

import type { Point } from "../../live/useLive";

const time = (t: number) => new Date(t).toLocaleTimeString();

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
          <XAxis dataKey="t" type="number" domain={[now - windowMs, now]} tickFormatter={time} scale="time"
            allowDataOverflow />
          <YAxis width={56} domain={["auto", "auto"]} tickFormatter={(v: number) => `${+v.toFixed(2)}`} />
          <Tooltip labelFormatter={(t) => time(Number(t))}
            formatter={(v) => [`${Number(v).toLocaleString()}${unit ? ` ${unit}` : ""}`, label]} />
          <Line type="monotone" dataKey="v" stroke="#1565c0" dot={false} isAnimationActive={false} strokeWidth={2} />
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}
