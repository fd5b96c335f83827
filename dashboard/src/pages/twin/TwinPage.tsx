import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import Paper from "@mui/material/Paper";
import Typography from "@mui/material/Typography";
import { useMemo, useState } from "react";

import { ApiError } from "../../api/client";
import { GRAPH_LIMIT, useTwinGraph, type TwinNode } from "../../api/twin";
import { Can } from "../../auth/Can";
import { usePermissions } from "../../auth/useAuth";
import { EmptyState } from "../../components/EmptyState";
import { ErrorAlert } from "../../components/ErrorAlert";
import { Loading } from "../../components/Loading";
import { PageHeader } from "../../components/PageHeader";
import { BuildingTree } from "./BuildingTree";
import { GraphView } from "./GraphView";
import { IfcImport } from "./IfcImport";
import { MapDeviceForm } from "./MapDeviceForm";
import { NodePanel } from "./NodePanel";
import { buildTree } from "./tree";

const PLACE_KINDS = new Set(["Space", "Element"]);

export default function TwinPage() {
  const graph = useTwinGraph();
  const { can } = usePermissions();
  const [importing, setImporting] = useState(false);
  const [selected, setSelected] = useState<number | null>(null);

  const forest = useMemo(() => (graph.data ? buildTree(graph.data.nodes, graph.data.links) : []), [graph.data]);
  const nodes = useMemo(() => new Map((graph.data?.nodes ?? []).map((n) => [n.id, n])), [graph.data]);
  const places = useMemo(() => (graph.data?.nodes ?? []).filter((n) => PLACE_KINDS.has(n.kind))
    .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true })), [graph.data]);
  const node: TwinNode | null = selected === null ? null : nodes.get(selected) ?? null;

  const importButton = (
    <Can action="twin.import">
      <Button variant={importing ? "outlined" : "contained"} onClick={() => setImporting((v) => !v)}
        aria-expanded={importing}>
        {importing ? "Close import" : "Import IFC"}
      </Button>
    </Can>
  );

  return (
    <Box>
      <PageHeader title="Digital twin" subtitle="The building model, where devices are and what they read"
        actions={importButton} />
      {importing && can("twin.import") && (
        <Paper variant="outlined" sx={{ p: 2, mb: 2 }}><IfcImport /></Paper>
      )}
      {graph.isPending ? <Loading label="Loading the building graph" />
        : graph.isError ? (
          <ErrorAlert title="The digital twin is unavailable" error={graph.error}
            onRetry={graph.error instanceof ApiError && graph.error.status === 402 ? undefined
              : () => void graph.refetch()} />
        ) : graph.data.nodes.length === 0 ? (
          <EmptyState title="No building yet">
            {can("twin.import") ? "Import an IFC file to build the digital twin."
              : "An administrator imports the building's IFC file to build the digital twin."}
          </EmptyState>
        ) : (
          <>
            <Typography variant="body2" color="text.secondary" sx={{ mb: 1 }} data-testid="graph-summary">
              {graph.data.nodes.length} nodes · {graph.data.links.length} links
            </Typography>
            {graph.data.truncated && (
              <Alert severity="warning" sx={{ mb: 2 }}>
                The building has more than {GRAPH_LIMIT} nodes; the views show the first {GRAPH_LIMIT}.
              </Alert>
            )}
            <Box sx={{ display: "grid", gap: 2, gridTemplateColumns: { xs: "1fr", md: "minmax(260px, 1fr) 2fr" } }}>
              <Paper variant="outlined" sx={{ p: 1, minWidth: 0 }} component="section" aria-label="Building tree">
                <BuildingTree forest={forest} selected={selected} onSelect={setSelected} height={480} />
              </Paper>
              <Paper variant="outlined" sx={{ overflow: "hidden", minWidth: 0, alignSelf: "start" }} component="section"
                aria-label="3D view">
                <GraphView graph={graph.data} selected={selected} onSelect={setSelected} height={480} />
              </Paper>
            </Box>
            <Can action="twin.edit">
              <Paper variant="outlined" sx={{ p: 2, mt: 2 }} component="section" aria-label="Map a device">
                <Typography variant="subtitle1" component="h2" sx={{ mb: 1 }}>Map a device to a space</Typography>
                <MapDeviceForm places={places} place={node && PLACE_KINDS.has(node.kind) ? node : null}
                  onPlaceChange={setSelected} />
              </Paper>
            </Can>
            <Paper variant="outlined" sx={{ p: 2, mt: 2 }}>
              {node ? <NodePanel node={node} />
                : <Typography color="text.secondary">Pick a space in the tree or the 3D view to see its devices and
                  their latest readings.</Typography>}
            </Paper>
          </>
        )}
    </Box>
  );
}
