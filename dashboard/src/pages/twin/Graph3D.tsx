// The 3D force-directed view. This module (three.js and the force engine, ~200 KB gzipped) is its own chunk,
// loaded only when the twin page decides WebGL is there.

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import ForceGraph3D, { type ForceGraphMethods } from "react-force-graph-3d";

import type { TwinGraph, TwinNode } from "../../api/twin";
import { kindColor } from "./colors";

interface Props {
  graph: TwinGraph;
  selected: number | null;
  onSelect: (nodeId: number) => void;
  height: number;
}

type ViewNode = TwinNode & { x?: number; y?: number; z?: number };

export default function Graph3D({ graph, selected, onSelect, height }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  const view = useRef<ForceGraphMethods<ViewNode> | undefined>(undefined);
  const fitted = useRef(false);
  const settled = useRef(false);
  const idle = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  // three.js redraws on every animation frame even when nothing moves. Once the layout has settled, drawing
  // pauses a few seconds after the last pointer or wheel event over the view (and after a new selection).
  const wake = useCallback(() => {
    view.current?.resumeAnimation();
    clearTimeout(idle.current);
    if (settled.current) idle.current = setTimeout(() => view.current?.pauseAnimation(), 4000);
  }, []);
  useEffect(() => () => clearTimeout(idle.current), []);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    setWidth(el.clientWidth);
    const observer = new ResizeObserver(([entry]) => setWidth(Math.floor(entry.contentRect.width)));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  // The engine writes positions into the objects it is given and swaps link ends for node objects: give it copies,
  // made again only when the graph itself changes (a new selection must not restart the layout).
  const data = useMemo(() => ({
    nodes: graph.nodes.map((n) => ({ ...n })),
    links: graph.links.map((l) => ({ ...l })),
  }), [graph]);
  useEffect(() => {
    fitted.current = false;
    settled.current = false;
    clearTimeout(idle.current);
    view.current?.resumeAnimation();
  }, [data]);
  useEffect(wake, [selected, width, wake]);
  return (
    <div ref={box} data-testid="graph-3d" onPointerMove={wake} onPointerDown={wake} onWheel={wake}
      style={{ width: "100%", height, lineHeight: 0, overflow: "hidden", position: "relative" }}>
      {width > 0 && (
        <ForceGraph3D<ViewNode>
          ref={view}
          graphData={data}
          width={width}
          height={height}
          backgroundColor="#10161f"
          nodeLabel={(n) => `${escapeHtml(n.name)} (${n.kind})`}
          nodeColor={(n) => (n.id === selected ? "#ffffff" : kindColor(n.kind))}
          nodeVal={(n) => (n.id === selected ? 8 : n.kind === "Device" ? 2 : 4)}
          linkColor={() => "rgba(200,210,230,0.35)"}
          linkDirectionalArrowLength={2}
          onNodeClick={(n) => typeof n.id === "number" && onSelect(n.id)}
          cooldownTime={5000}
          // Once settled, frame the whole building (only the first time: later the user's camera is kept).
          onEngineStop={() => {
            settled.current = true;
            if (!fitted.current) {
              fitted.current = true;
              view.current?.zoomToFit(400, 40);
            }
            wake();
          }}
          showNavInfo={false}
        />
      )}
    </div>
  );
}

/** Node labels are shown as HTML by the library: names come from uploaded files, so they are escaped. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
