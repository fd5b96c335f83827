import Box from "@mui/material/Box";
import { RichTreeView } from "@mui/x-tree-view/RichTreeView";
import { useEffect, useMemo, useState } from "react";

import { defaultExpanded, pathTo, type TreeItem } from "./tree";

interface Props {
  forest: TreeItem[];
  /** the selected graph node */
  selected: number | null;
  onSelect: (nodeId: number) => void;
  height?: number;
}

function index(forest: readonly TreeItem[]): Map<string, TreeItem> {
  const byId = new Map<string, TreeItem>();
  const walk = (items: readonly TreeItem[]) => {
    for (const item of items) {
      byId.set(item.id, item);
      walk(item.children);
    }
  };
  walk(forest);
  return byId;
}

/** The building as an accessible tree (arrow keys move and open, Enter or Space selects, typing jumps). */
export function BuildingTree({ forest, selected, onSelect, height = 480 }: Props) {
  const items = useMemo(() => index(forest), [forest]);
  const [expanded, setExpanded] = useState<string[]>(() => defaultExpanded(forest));
  const [selectedItem, setSelectedItem] = useState<string | null>(null);
  // A new import brings new buildings: open their upper levels too, keeping what the user opened.
  useEffect(() => setExpanded((open) => [...new Set([...open, ...defaultExpanded(forest)])]), [forest]);

  // A node picked elsewhere (the 3D view, the mapping form) is shown here: its branch opened, the item selected.
  useEffect(() => {
    if (selected === null) {
      setSelectedItem(null);
      return;
    }
    if (selectedItem !== null && items.get(selectedItem)?.nodeId === selected) return;
    const path = pathTo(forest, selected);
    if (path === null) return;
    setExpanded((open) => [...new Set([...open, ...path])]);
    const parent = path.length ? items.get(path[path.length - 1])?.children : forest;
    setSelectedItem(parent?.find((i) => i.nodeId === selected)?.id ?? null);
  }, [selected, selectedItem, forest, items]);

  return (
    <Box sx={{ maxHeight: height, overflow: "auto" }}>
      <RichTreeView<TreeItem>
        aria-label="Building tree"
        items={forest}
        getItemLabel={(item) => `${item.label} · ${item.kind}`}
        expandedItems={expanded}
        onExpandedItemsChange={(_e, ids) => setExpanded(ids)}
        selectedItems={selectedItem}
        onSelectedItemsChange={(_e, id) => {
          setSelectedItem(id);
          const item = id === null ? undefined : items.get(id);
          if (item) onSelect(item.nodeId);
        }}
        expansionTrigger="iconContainer"
      />
    </Box>
  );
}
