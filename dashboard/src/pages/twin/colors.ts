/** One colour per node kind, shared by the 3D view and the tree's legend. */
export const KIND_COLORS: Record<string, string> = {
  Project: "#6a1b9a",
  Site: "#2e7d32",
  Building: "#1565c0",
  Storey: "#00838f",
  Space: "#f9a825",
  Zone: "#ad1457",
  Element: "#ef6c00",
  Device: "#d32f2f",
};

export function kindColor(kind: string): string {
  return KIND_COLORS[kind] ?? "#757575";
}
