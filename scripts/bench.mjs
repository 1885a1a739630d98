#!/usr/bin/env node
// `npm run bench`: the hot paths, each printed with its figure and its ratio
// to the baseline it is compared with. Long-running; not part of `npm test`.
//
// The interpreter runs in Node's V8 here (workerd's clocks are coarse by
// design); both bundles are built from the same sources with esbuild.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { rateThroughApi } from "./api-rate.mjs";
import { chart, sweepChart } from "./chart.mjs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = new URL("..", import.meta.url).pathname;
const out = mkdtempSync(join(tmpdir(), "kemari-bench-"));
const seconds = Number(process.env.BENCH_SECONDS || 3);

// The "without dirty tracking" variant: the same interpreter with the store
// path's page-flag check removed, so the comparison is the same loop.
const noDirty = {
  name: "no-dirty-tracking",
  setup(b) {
    b.onLoad({ filter: /src\/guest\/cpu\.ts$/ }, (args) => {
      const src = readFileSync(args.path, "utf8");
      // A store leaves its block for the slow path (mem.touch) when its page has flags: that test becomes 0.
      const pattern = /flags\[a >>> 12\](?=\) !== 0\) \{| !== 0\) \{)/g;
      const stripped = src.replace(pattern, "0");
      const removed = (src.match(pattern) || []).length;
      if (removed !== 3) throw new Error(`expected to strip 3 dirty checks (sb, sh, sw), stripped ${removed}`);
      return { contents: stripped, loader: "ts" };
    });
  },
};

async function bundle(name, plugins = []) {
  const outfile = join(out, `${name}.mjs`);
  await build({ entryPoints: [join(root, "bench/interpreter.ts")], bundle: true, format: "esm", platform: "node", outfile, plugins, logLevel: "warning" });
  return import(pathToFileURL(outfile).href);
}

const fmt = (n, d = 1) => n.toFixed(d);
const row = (name, figure, ratio, note) => console.log(`${name.padEnd(44)} ${figure.padStart(16)}   ${ratio.padStart(10)}   ${note}`);

const tracked = await bundle("tracked");
const untracked = await bundle("untracked", [noDirty]);

console.log(`Kemari benchmarks (node ${process.version}, ${seconds}s per figure)\n`);
row("benchmark", "figure", "ratio", "baseline");
// Interleaved rounds, with and without dirty tracking, each figure the median: this machine's
// speed drifts by up to 2x from one second to the next (a single 3 s window read 169 M/s at the
// start of a run whose later windows read 280-306).
const ROUNDS = 5;
const runs = { tracked: [], untracked: [] };
for (let r = 0; r < ROUNDS; r++) {
  runs.tracked.push(tracked.measure(tracked.COMPUTE_LOOP, seconds / 3).mips);
  runs.untracked.push(untracked.measure(untracked.COMPUTE_LOOP, seconds / 3).mips);
}
const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
const a = { mips: median(runs.tracked) };
const b = { mips: median(runs.untracked) };
const trackingCost = median(runs.tracked.map((t, i) => runs.untracked[i] / t));
row("interpreter, compute loop", `${fmt(a.mips)} M instr/s`, `${fmt(a.mips / 300, 2)}x`, `target 300 M instr/s (>= 1.00x; #13); median of ${ROUNDS} windows: ${runs.tracked.map((m) => fmt(m, 0)).join(" / ")}`);
const api = await rateThroughApi(root, tracked.COMPUTE_LOOP);
const apiMedian = [...api].sort((x, y) => x - y)[api.length >> 1];
row("same loop through the API (wrangler dev)", `${fmt(apiMedian / 1e6)} M instr/s`, `${fmt(apiMedian / 250e6, 2)}x`, `target 250 M instr/s (>= 1.00x; #13); windows ${api.map((r) => fmt(r / 1e6, 0)).join(" / ")}`);
row("same loop without dirty tracking", `${fmt(b.mips)} M instr/s`, "", `windows, interleaved with the above: ${runs.untracked.map((m) => fmt(m, 0)).join(" / ")}`);
row("dirty tracking cost", `${fmt((trackingCost - 1) * 100)} %`, `${fmt(trackingCost, 3)}x`, "time with / time without, median of the rounds' ratios (1.00x = free)");
const c = tracked.measure(tracked.COMPUTE_LOOP, seconds, 1);
row("with a sync every 1M instructions", `${fmt(c.mips)} M instr/s`, `${fmt(a.mips / c.mips, 3)}x`, "time / time without syncs");
for (const pages of [1, 64, 1024]) {
  const us = tracked.dirtySetCost(pages);
  row(`read+clear dirty set, ${pages} of 16384 pages`, `${fmt(us, 2)} us`, `${fmt(us / pages, 3)}`, "us per dirty page (O(dirty), not O(memory))");
}

// The Kemari figures and the mode comparison need Durable Objects: they run
// inside workerd, like the tests (bench/*.bench.ts).
console.log("");
const inside = spawnSync(process.execPath, [join(root, "node_modules/vitest/vitest.mjs"), "run", "--config", "vitest.bench.config.ts", "--silent=false"], {
  cwd: root,
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  maxBuffer: 64 << 20,
});
// Strip terminal colours (ESC [ … m) before looking for the tables.
const text = inside.stdout.toString().replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "");
if (inside.status !== 0) {
  console.error(text);
  process.exit(inside.status ?? 1);
}
for (const title of ["Kemari synchronisation", "Modes compared", "Across regions", "Cost per guest", "Per-object limits"]) {
  const at = text.indexOf(title);
  if (at < 0) throw new Error(`the bench printed no "${title}" table`);
  const end = text.indexOf("\n\n", text.indexOf("\n", at + title.length) + 1);
  console.log(text.slice(at, end < 0 ? undefined : end).replace(/\n(target:)/g, "\n$1"));
  console.log("");
}
const json = /COMPARE_JSON (\{.*\})/.exec(text);
if (!json) throw new Error("the comparison printed no COMPARE_JSON line");
const results = JSON.parse(json[1]);
writeFileSync(join(root, "bench/results.json"), JSON.stringify(results, null, 2) + "\n");
writeFileSync(join(root, "bench/results.svg"), chart(results.results));
const regions = /REGIONS_JSON (\{.*\})/.exec(text);
if (!regions) throw new Error("the regions bench printed no REGIONS_JSON line");
const across = JSON.parse(regions[1]);
writeFileSync(join(root, "bench/regions.json"), JSON.stringify(across, null, 2) + "\n");
if (across.sweep.length > 0) writeFileSync(join(root, "bench/regions.svg"), sweepChart(across.sweep));
const cost = /COST_JSON (\{.*\})/.exec(text);
if (!cost) throw new Error("the cost bench printed no COST_JSON line");
writeFileSync(join(root, "bench/cost.json"), JSON.stringify(JSON.parse(cost[1]), null, 2) + "\n");
// A host's memory with a 64 MiB guest (the 128 MB isolate limit): the simulator measures it on the same code.
const memory = spawnSync(process.execPath, [join(root, "scripts/sim.mjs"), "--memory"], { cwd: root, encoding: "utf8" });
if (memory.status !== 0) throw new Error(`sim --memory failed: ${memory.stderr}`);
console.log(`Host memory, 64 MiB guest (npm run sim -- --memory)\n${memory.stdout.trim()}\n`);
console.log("wrote bench/results.json, bench/results.svg, bench/regions.json, bench/regions.svg and bench/cost.json");
