import Chip, { type ChipProps } from "@mui/material/Chip";

const COLORS: Record<string, ChipProps["color"]> = {
  online: "success", active: "success", running: "success", issued: "success", completed: "success",
  succeeded: "success", ok: "success", valid: "success",
  offline: "default", registered: "info", pending: "warning", paused: "warning", stopped: "default",
  exited: "default", installing: "info", downloading: "info", starting: "info", restarting: "info",
  disabled: "default", revoked: "default", expired: "warning",
  failed: "error", error: "error", dead: "error", refused: "error", invalid: "error",
};

/** A status word with a colour that also reads without colour (the label is the status). */
export function StatusChip({ status, label, size = "small" }: { status: string; label?: string;
  size?: ChipProps["size"] }) {
  return <Chip size={size} label={label ?? status} color={COLORS[status.toLowerCase()] ?? "default"}
    variant={COLORS[status.toLowerCase()] === "default" ? "outlined" : "filled"} />;
}

export function OnlineChip({ online }: { online: boolean }) {
  return <StatusChip status={online ? "online" : "offline"} />;
}
