// Prints the initial JavaScript the browser downloads before the first page renders (the entry chunk and every
// chunk it imports statically, gzipped) and fails the build when it exceeds the budget. Lazy routes, the 3D view
// and charts are dynamic imports and so are not counted.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 400 * 1024;
const dist = new URL("../dist/", import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(dist, ".vite/manifest.json"), "utf8"));

const entries = Object.keys(manifest).filter((k) => manifest[k].isEntry);
if (entries.length === 0) {
  console.error("size: no entry chunk in dist/.vite/manifest.json");
  process.exit(1);
}
const seen = new Set();
const visit = (key) => {
  if (seen.has(key)) return;
  seen.add(key);
  for (const dep of manifest[key].imports ?? []) visit(dep);
};
entries.forEach(visit);

let total = 0;
const rows = [];
for (const key of seen) {
  const file = manifest[key].file;
  if (!file.endsWith(".js")) continue;
  const gz = gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
  total += gz;
  rows.push([file, gz]);
}
rows.sort((a, b) => b[1] - a[1]);
for (const [file, gz] of rows) console.log(`  ${(gz / 1024).toFixed(1).padStart(8)} KB  ${file}`);
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(`initial JS (gzipped): ${kb(total)} of ${kb(BUDGET)} budget, ${rows.length} chunk(s)`);
if (total > BUDGET) {
  console.error(`size: initial JS ${kb(total)} is over the ${kb(BUDGET)} budget; lazy-load something`);
  process.exit(1);
}
