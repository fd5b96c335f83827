/** The building graph as a tree for the 2D view: the spatial tree (CONTAINS), with elements and devices under
 * their place (LOCATED_IN), and each zone listing the spaces it groups (GROUPS). Pure functions. */

export interface GraphNode {
  id: number;
  kind: string;
  name: string;
  globalId?: string | null;
  ifcClass?: string | null;
  device?: string | null;
}

export interface GraphLink {
  id: number;
  source: number;
  target: number;
  kind: string;
}

export interface TreeItem {
  /** Unique in the tree: the node id, or `zone/space` for a space listed under a zone too. */
  id: string;
  nodeId: number;
  label: string;
  kind: string;
  children: TreeItem[];
}

const KIND_ORDER = ["Project", "Site", "Building", "Storey", "Space", "Zone", "Element", "Device"];
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function rank(kind: string): number {
  const i = KIND_ORDER.indexOf(kind);
  return i === -1 ? KIND_ORDER.length : i;
}

function byKindThenName(a: TreeItem, b: TreeItem): number {
  return rank(a.kind) - rank(b.kind) || collator.compare(a.label, b.label) || a.nodeId - b.nodeId;
}

export function nodeLabel(node: GraphNode): string {
  return node.name.trim() || node.globalId || `${node.kind} ${node.id}`;
}

/** Build the forest. A node has one parent: its container (CONTAINS) or else its place (LOCATED_IN). */
export function buildTree(nodes: readonly GraphNode[], links: readonly GraphLink[]): TreeItem[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const kind of ["CONTAINS", "LOCATED_IN"] as const) {
    for (const l of links) {
      if (l.kind !== kind) continue;
      const [up, down] = kind === "CONTAINS" ? [l.source, l.target] : [l.target, l.source];
      if (byId.has(up) && byId.has(down) && up !== down && !parent.has(down)) parent.set(down, up);
    }
  }
  const children = new Map<number, number[]>();
  for (const [down, up] of parent) {
    const list = children.get(up);
    if (list) list.push(down);
    else children.set(up, [down]);
  }
  const grouped = new Map<number, number[]>();
  for (const l of links) {
    if (l.kind !== "GROUPS" || !byId.has(l.source) || !byId.has(l.target)) continue;
    const list = grouped.get(l.source);
    if (list) list.push(l.target);
    else grouped.set(l.source, [l.target]);
  }

  const placed = new Set<number>();
  const make = (id: number): TreeItem => {
    placed.add(id);
    const node = byId.get(id) as GraphNode;
    const kids = (children.get(id) ?? []).filter((c) => !placed.has(c)).map(make);
    for (const member of grouped.get(id) ?? []) {
      const m = byId.get(member) as GraphNode;
      kids.push({ id: `${id}/${member}`, nodeId: member, label: nodeLabel(m), kind: m.kind, children: [] });
    }
    kids.sort(byKindThenName);
    return { id: String(id), nodeId: id, label: nodeLabel(node), kind: node.kind, children: kids };
  };
  const roots = nodes.filter((n) => !parent.has(n.id)).map((n) => make(n.id));
  // Nodes left over sit on a parent cycle (not made by imports, but the tree must still show them).
  for (const n of nodes) if (!placed.has(n.id)) roots.push(make(n.id));
  return roots.sort(byKindThenName);
}

/** Ids of the items from the root down to (not including) the first item showing `nodeId`, for expanding. */
export function pathTo(forest: readonly TreeItem[], nodeId: number): string[] | null {
  for (const item of forest) {
    if (item.nodeId === nodeId) return [];
    const below = pathTo(item.children, nodeId);
    if (below) return [item.id, ...below];
  }
  return null;
}

/** Ids of the items to open at first: the spatial levels top down (project, site, building, storey), level by
 * level while no more than `maxVisible` items would show, so a small building shows its spaces at once and a
 * large one its buildings and storeys. */
export function defaultExpanded(forest: readonly TreeItem[], maxVisible = 200): string[] {
  const open: string[] = [];
  let visible = forest.length;
  let level: readonly TreeItem[] = forest;
  while (level.length) {
    const next: TreeItem[] = [];
    for (const item of level) {
      if (!OPEN_KINDS.has(item.kind) || !item.children.length) continue;
      if (visible + item.children.length > maxVisible) return open;
      open.push(item.id);
      visible += item.children.length;
      next.push(...item.children);
    }
    level = next;
  }
  return open;
}

const OPEN_KINDS = new Set(["Project", "Site", "Building", "Storey"]);
