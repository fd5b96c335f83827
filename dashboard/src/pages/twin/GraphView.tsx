import Alert from "@mui/material/Alert";
import { Component, lazy, Suspense, useMemo, type ReactNode } from "react";

import type { TwinGraph } from "../../api/twin";
import { Loading } from "../../components/Loading";
import { webglUnavailableReason } from "./webgl";

const Graph3D = lazy(() => import("./Graph3D"));

interface Props {
  graph: TwinGraph;
  selected: number | null;
  onSelect: (nodeId: number) => void;
  height?: number;
  /** For tests: the answer of the WebGL probe. */
  probe?: () => string | null;
}

function Unavailable({ reason }: { reason: string }) {
  return (
    <Alert severity="info" data-testid="graph-3d-unavailable">
      <strong>No 3D view.</strong> {reason} The tree shows the same building: pick spaces there.
    </Alert>
  );
}

/** A chunk that fails to load or a renderer that fails to start shows a message, not a blank page. */
class Guard extends Component<{ children: ReactNode }, { error: unknown }> {
  state = { error: null as unknown };

  static getDerivedStateFromError(error: unknown) {
    return { error };
  }

  render() {
    if (this.state.error != null) {
      const message = this.state.error instanceof Error ? this.state.error.message : String(this.state.error);
      return <Unavailable reason={`The 3D view failed to start (${message}).`} />;
    }
    return this.props.children;
  }
}

/** The 3D view when the browser has WebGL, else a clear message; its code loads only in the first case. */
export function GraphView({ graph, selected, onSelect, height = 480, probe = webglUnavailableReason }: Props) {
  const reason = useMemo(() => probe(), [probe]);
  if (reason !== null) return <Unavailable reason={reason} />;
  return (
    <Guard>
      <Suspense fallback={<Loading label="Loading the 3D view" />}>
        <Graph3D graph={graph} selected={selected} onSelect={onSelect} height={height} />
      </Suspense>
    </Guard>
  );
}
