// The charts (recharts, its own chunk: loaded when the metrics page first draws one).

import Box from "@mui/material/Box";
import Paper from "@mui/material/Paper";
import Typography from "@mui/material/Typography";
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

import { lineColor } from "./palette";
import { formatValue, latestText, type ChartModel } from "./shape";

interface Props {
  charts: ChartModel[];
  /** device uuid -> its colour index */
  colorIndex: (device: string) => number;
  /** x range in ms; the data's own range when omitted */
  domain?: [number, number];
  height?: number;
}

function formatTime(span: number) {
  return (t: number) => {
    const d = new Date(t);
    return span > 2 * 86_400_000 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" })
      : span > 3_600_000 ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
      : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  };
}

/** Five evenly spaced instants across the range (the axis otherwise labels only the data's own instants). */
function timeTicks([start, end]: [number, number]): number[] {
  if (!(end > start)) return [start];
  return Array.from({ length: 5 }, (_, i) => Math.round(start + ((end - start) * i) / 4));
}

/** Room for the longest value label (a fixed width cut "1007.44 hPa" to "07.44"). */
function axisWidth(chart: ChartModel): number {
  let longest = 1;
  for (const row of chart.rows) {
    for (const line of chart.lines) {
      const v = row[line.key];
      if (v !== undefined) longest = Math.max(longest, formatValue(v).length);
    }
  }
  return Math.min(100, 16 + longest * 8);
}

/** A line of a few points is drawn with its points, so a single reading is not invisible. */
function sparse(rows: ChartModel["rows"], key: string): boolean {
  let n = 0;
  for (const row of rows) if (row[key] !== undefined && ++n > 30) return false;
  return true;
}

export default function ChartGrid({ charts, colorIndex, domain, height = 260 }: Props) {
  return (
    <Box sx={{ display: "grid", gap: 2, gridTemplateColumns: { xs: "1fr", lg: "1fr 1fr" } }}>
      {charts.map((chart) => {
        const first = chart.rows[0]?.t ?? 0;
        const last = chart.rows[chart.rows.length - 1]?.t ?? 0;
        const span = domain ? domain[1] - domain[0] : last - first;
        const title = chart.unit ? `${chart.metric} (${chart.unit})` : chart.metric;
        const xDomain: [number, number] = domain ?? [first, last];
        return (
          <Paper key={chart.metric} variant="outlined" sx={{ p: 2, minWidth: 0 }} component="figure"
            aria-label={`Chart of ${title}`} data-testid={`chart-${chart.metric}`}
            data-points={chart.rows.length} data-last={last || undefined} style={{ margin: 0 }}>
            <Typography variant="subtitle1" component="figcaption">{title}</Typography>
            <Typography variant="body2" color="text.secondary" aria-live="off">{latestText(chart)}</Typography>
            <Box sx={{ height, mt: 1 }}>
              <ResponsiveContainer width="100%" height="100%" initialDimension={{ width: 400, height }}>
                <LineChart data={chart.rows} margin={{ top: 8, right: 16, bottom: 0, left: 0 }}>
                  <CartesianGrid strokeDasharray="3 3" />
                  <XAxis dataKey="t" type="number" scale="time" domain={xDomain} allowDataOverflow
                    ticks={timeTicks(xDomain)} tickFormatter={formatTime(span)} minTickGap={24} />
                  <YAxis width={axisWidth(chart)} domain={["auto", "auto"]} tickFormatter={formatValue} />
                  <Tooltip labelFormatter={(t) => new Date(Number(t)).toLocaleString()}
                    formatter={(v) => formatValue(v)} />
                  <Legend />
                  {chart.lines.map((line) => (
                    <Line key={line.key} dataKey={line.key} name={line.label} type="monotone"
                      stroke={lineColor(colorIndex(line.key))} strokeWidth={2} connectNulls
                      dot={sparse(chart.rows, line.key) ? { r: 3 } : false}
                      isAnimationActive={false} />
                  ))}
                </LineChart>
              </ResponsiveContainer>
            </Box>
          </Paper>
        );
      })}
    </Box>
  );
}
