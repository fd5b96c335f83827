// The 3D force-directed view. This module (three.js and the force engine, ~200 KB gzipped) is its own chunk,
// loaded only when the twin page decides WebGL is there.

import { useEffect, useMemo, useRef, useState } from "react";
import ForceGraph3D from "react-force-graph-3d";

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
  return (
    <div ref={box} data-testid="graph-3d" style={{ width: "100%", height }}>
      {width > 0 && (
        <ForceGraph3D<ViewNode>
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
          // The layout settles and then stops, so an idle page costs no CPU.
          cooldownTime={8000}
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
