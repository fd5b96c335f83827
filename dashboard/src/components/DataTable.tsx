import Paper from "@mui/material/Paper";
import Table from "@mui/material/Table";
import TableBody from "@mui/material/TableBody";
import TableCell from "@mui/material/TableCell";
import TableContainer from "@mui/material/TableContainer";
import TableHead from "@mui/material/TableHead";
import TablePagination from "@mui/material/TablePagination";
import TableRow from "@mui/material/TableRow";
import LinearProgress from "@mui/material/LinearProgress";
import type { ReactNode } from "react";

import { EmptyState } from "./EmptyState";
import { ErrorAlert } from "./ErrorAlert";
import { Loading } from "./Loading";

export interface Column<T> {
  key: string;
  header: ReactNode;
  render: (row: T) => ReactNode;
  align?: "left" | "right" | "center";
  /** Hidden below this breakpoint so tables stay readable on a tablet. */
  hideBelow?: "sm" | "md" | "lg";
  width?: number | string;
}

export interface Paging {
  page: number;
  pageSize: number;
  total: number;
  onPageChange: (page: number) => void;
  onPageSizeChange?: (size: number) => void;
  pageSizeOptions?: number[];
}

export interface DataTableProps<T> {
  label: string;
  columns: Column<T>[];
  rows: T[] | undefined;
  rowKey: (row: T) => string | number;
  loading?: boolean;
  /** Refetching with rows still shown: a thin bar instead of replacing the table. */
  fetching?: boolean;
  error?: unknown;
  onRetry?: () => void;
  empty?: ReactNode;
  paging?: Paging;
}

/** A table with loading, error and empty states and optional server-side paging. */
export function DataTable<T>({ label, columns, rows, rowKey, loading, fetching, error, onRetry, empty,
  paging }: DataTableProps<T>) {
  if (error != null && !rows) return <ErrorAlert error={error} onRetry={onRetry} />;
  if (loading && !rows) return <Loading label={`Loading ${label.toLowerCase()}`} />;
  const hide = (c: Column<T>) => (c.hideBelow ? { display: { xs: "none", [c.hideBelow]: "table-cell" } } : {});
  return (
    <Paper variant="outlined">
      {error != null && <ErrorAlert error={error} onRetry={onRetry} />}
      <LinearProgress sx={{ visibility: fetching ? "visible" : "hidden" }} aria-hidden />
      {rows && rows.length === 0 ? (
        empty ?? <EmptyState title={`No ${label.toLowerCase()}`} />
      ) : (
        <TableContainer>
          <Table size="small" aria-label={label}>
            <TableHead>
              <TableRow>
                {columns.map((c) => (
                  <TableCell key={c.key} align={c.align} sx={{ ...hide(c), width: c.width, fontWeight: 600 }}>
                    {c.header}
                  </TableCell>
                ))}
              </TableRow>
            </TableHead>
            <TableBody>
              {(rows ?? []).map((row) => (
                <TableRow key={rowKey(row)} hover>
                  {columns.map((c) => (
                    <TableCell key={c.key} align={c.align} sx={hide(c)}>{c.render(row)}</TableCell>
                  ))}
                </TableRow>
              ))}
            </TableBody>
          </Table>
        </TableContainer>
      )}
      {paging && (
        <TablePagination
          component="div"
          count={paging.total}
          page={paging.page}
          rowsPerPage={paging.pageSize}
          rowsPerPageOptions={paging.pageSizeOptions ?? [25, 50, 100]}
          onPageChange={(_e, p) => paging.onPageChange(p)}
          onRowsPerPageChange={paging.onPageSizeChange
            ? (e) => paging.onPageSizeChange?.(Number(e.target.value)) : undefined}
        />
      )}
    </Paper>
  );
}
