import { describe, expect, it } from "vitest";

import { buildTree, defaultExpanded, pathTo, type GraphLink, type GraphNode, type TreeItem } from "./tree";

const n = (id: number, kind: string, name: string): GraphNode => ({ id, kind, name });
let linkId = 0;
const l = (source: number, target: number, kind: string): GraphLink => ({ id: ++linkId, source, target, kind });

const nodes = [
  n(1, "Project", "P"), n(2, "Site", "S"), n(3, "Building", "A"), n(4, "Storey", "Level 10"),
  n(5, "Storey", "Level 2"), n(6, "Space", "Room 2"), n(7, "Space", "Room 10"), n(8, "Element", "Sensor"),
  n(9, "Zone", "Zone Z"), n(10, "Device", "boiler"), n(11, "Device", "unplaced"),
];
const links = [
  l(1, 2, "CONTAINS"), l(2, 3, "CONTAINS"), l(3, 4, "CONTAINS"), l(3, 5, "CONTAINS"), l(5, 6, "CONTAINS"),
  l(5, 7, "CONTAINS"), l(8, 6, "LOCATED_IN"), l(10, 7, "LOCATED_IN"), l(9, 6, "GROUPS"), l(9, 7, "GROUPS"),
  l(8, 7, "MONITORS"),
];

function shape(items: TreeItem[]): unknown[] {
  return items.map((i) => (i.children.length ? { [i.label]: shape(i.children) } : i.label));
}

describe("building tree", () => {
  it("nests the spatial tree, puts elements and devices in their place, lists a zone's spaces", () => {
    const forest = buildTree(nodes, links);
    expect(shape(forest)).toEqual([
      // Numeric order: Level 2 before Level 10, Room 2 before Room 10.
      { P: [{ S: [{ A: [{ "Level 2": [{ "Room 2": ["Sensor"] }, { "Room 10": ["boiler"] }] }, "Level 10"] }] }] },
      { "Zone Z": ["Room 2", "Room 10"] },
      "unplaced",
    ]);
    // A space listed under its zone too has its own item id but selects the same node.
    const zone = forest[1];
    expect(zone.children.map((c) => [c.id, c.nodeId])).toEqual([["9/6", 6], ["9/7", 7]]);
  });

  it("finds the branch to open for a node picked elsewhere", () => {
    const forest = buildTree(nodes, links);
    expect(pathTo(forest, 10)).toEqual(["1", "2", "3", "5", "7"]);
    expect(pathTo(forest, 1)).toEqual([]);
    expect(pathTo(forest, 99)).toBeNull();
    expect(defaultExpanded(forest)).toEqual(["1", "2", "3", "5"]);
    // Opening stops at the level that would show too many items (zone 9 is not a spatial level).
    expect(defaultExpanded(forest, 8)).toEqual(["1", "2", "3"]);
    expect(defaultExpanded(forest, 3)).toEqual([]);
  });

  it("shows every node once even on a parent cycle or with links to nodes not returned", () => {
    const forest = buildTree([n(1, "Space", "x"), n(2, "Space", "y")],
      [l(1, 2, "CONTAINS"), l(2, 1, "CONTAINS"), l(1, 42, "CONTAINS")]);
    const all: number[] = [];
    const walk = (items: TreeItem[]) => items.forEach((i) => {
      all.push(i.nodeId);
      walk(i.children);
    });
    walk(forest);
    expect(all.sort()).toEqual([1, 2]);
  });

  it("labels a node without a name by its GlobalId or kind", () => {
    const forest = buildTree([{ id: 3, kind: "Space", name: " ", globalId: "2O2Fr$t4X7Zf8NOew3FLOH" },
      n(4, "Space", "")], []);
    expect(forest.map((i) => i.label)).toEqual(["2O2Fr$t4X7Zf8NOew3FLOH", "Space 4"]);
  });
});
