import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import { lazy, Suspense, useMemo, useState } from "react";

import { errorMessage } from "../../api/client";
import { useSeries } from "../../api/telemetry";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { chartsByMetric, fromApiSeries } from "./shape";
import { rangeToParams, resolveRange, type TimeRange } from "./timeRange";
import { TimeRangePicker } from "./TimeRangePicker";

const ChartGrid = lazy(() => import("./ChartGrid"));

interface Props {
  pairs: { device: string; metric: string }[];
  label: (uuid: string) => string;
  unit: (metric: string) => string | null;
  colorIndex: (uuid: string) => number;
}

/** Bucketed (or raw) history of every chosen device and metric over one time range. */
export function HistoryPanel({ pairs, label, unit, colorIndex }: Props) {
  const [range, setRange] = useState<TimeRange>({ kind: "relative", seconds: 3600 });
  const [bucket, setBucket] = useState<number | undefined>(undefined);
  // A relative range is "the last hour as of `now`": Refresh (or choosing again) moves it forward.
  const [now, setNow] = useState(() => new Date());
  const params = useMemo(() => {
    try {
      return rangeToParams(range, now, { bucket });
    } catch (err) {
      return err as RangeError;
    }
  }, [range, now, bucket]);
  const query = params instanceof RangeError ? null : params;
  const results = useSeries(pairs, query);

  const series = results.flatMap((r, i) => (r.data ? [fromApiSeries(r.data, unit(pairs[i].metric))] : []));
  const charts = chartsByMetric(series, label);
  const errors = [...new Set(results.filter((r) => r.isError).map((r) => errorMessage(r.error)))];
  const loading = results.some((r) => r.isPending && r.fetchStatus === "fetching");
  const truncated = results.some((r) => r.data?.truncated);
  const empty = !loading && series.length > 0 && series.every((s) => s.points.length === 0);
  const { from, to } = resolveRange(range, now);

  return (
    <Box>
      <TimeRangePicker range={range} bucket={bucket} onBucket={setBucket}
        onRange={(r) => {
          setRange(r);
          setNow(new Date());
        }}
        onRefresh={() => setNow(new Date())} />
      {params instanceof RangeError && <ErrorAlert error={params.message} />}
      {errors.map((message) => <ErrorAlert key={message} title="Some series could not be loaded" error={message} />)}
      {truncated && (
        <Alert severity="info" sx={{ my: 1 }}>
          More raw readings than shown in this range: choose a shorter range or a bucket size.
        </Alert>
      )}
      <Box sx={{ mt: 2 }}>
        {loading && series.length === 0 ? <Loading label="Loading history" />
          : empty ? (
            <EmptyState title="No readings in this range">
              Between {from.toLocaleString()} and {to.toLocaleString()} none of the chosen devices sent these
              metrics.
            </EmptyState>
          ) : (
            <Suspense fallback={<Loading label="Loading charts" />}>
              <ChartGrid charts={charts} colorIndex={colorIndex}
                domain={query ? [Date.parse(query.from), Date.parse(query.to)] : undefined} />
            </Suspense>
          )}
      </Box>
    </Box>
  );
}
