import Alert from "@mui/material/Alert";
import AlertTitle from "@mui/material/AlertTitle";
import Box from "@mui/material/Box";
import Table from "@mui/material/Table";
import TableBody from "@mui/material/TableBody";
import TableCell from "@mui/material/TableCell";
import TableHead from "@mui/material/TableHead";
import TableRow from "@mui/material/TableRow";
import Typography from "@mui/material/Typography";

import type { ImportReport as Report } from "../../api/twin";

const KINDS = ["Project", "Site", "Building", "Storey", "Space", "Zone", "Element"];

/** What an import did: per node type how many the file holds and what changed, then edges, lost mappings and
 *  the importer's warnings. */
export function ImportReport({ report, filename }: { report: Report; filename: string }) {
  const kinds = [...new Set([...KINDS, ...Object.keys(report.counts), ...Object.keys(report.created),
    ...Object.keys(report.updated), ...Object.keys(report.deleted)])]
    .filter((k) => report.counts[k] || report.created[k] || report.updated[k] || report.deleted[k]);
  return (
    <Box component="section" aria-label="Import report" data-testid="import-report">
      <Alert severity="success" sx={{ mb: 2 }}>
        <AlertTitle>Imported {filename}</AlertTitle>
        {report.schema}: {report.nodes} nodes and {report.edges} relationships in the file;
        {" "}{report.edgesCreated} links created, {report.edgesDeleted} removed.
      </Alert>
      {kinds.length > 0 && (
        <Box sx={{ overflowX: "auto" }}>
          <Table size="small" aria-label="Nodes per type">
            <TableHead>
              <TableRow>
                <TableCell component="th" scope="col">Type</TableCell>
                <TableCell align="right">In the file</TableCell>
                <TableCell align="right">Created</TableCell>
                <TableCell align="right">Updated</TableCell>
                <TableCell align="right">Deleted</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {kinds.map((k) => (
                <TableRow key={k}>
                  <TableCell component="th" scope="row">{k}</TableCell>
                  <TableCell align="right">{report.counts[k] ?? 0}</TableCell>
                  <TableCell align="right">{report.created[k] ?? 0}</TableCell>
                  <TableCell align="right">{report.updated[k] ?? 0}</TableCell>
                  <TableCell align="right">{report.deleted[k] ?? 0}</TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        </Box>
      )}
      {report.lostMappings.length > 0 && (
        <Alert severity="warning" sx={{ mt: 2 }}>
          <AlertTitle>{report.lostMappings.length} device mapping(s) lost</AlertTitle>
          Their space or element is no longer in the model; map these devices again:
          <Box component="ul" sx={{ m: 0, pl: 3 }}>
            {report.lostMappings.map((m) => <li key={m.device}>{m.device} (was in {m.globalId})</li>)}
          </Box>
        </Alert>
      )}
      {report.warnings.length > 0 && (
        <Alert severity="warning" sx={{ mt: 2 }}>
          <AlertTitle>{report.warnings.length} warning(s)</AlertTitle>
          <Box component="ul" sx={{ m: 0, pl: 3 }}>
            {report.warnings.map((w, i) => <li key={i}>{w}</li>)}
          </Box>
        </Alert>
      )}
      {report.warnings.length === 0 && (
        <Typography variant="body2" color="text.secondary" sx={{ mt: 1 }}>No warnings.</Typography>
      )}
    </Box>
  );
}
