#!/usr/bin/env node
// npm run sim -- [--seeds N] [--from S] [--seed S] [--trace] [--mode M] [--guest G] [--mutation M]
// Bundles the simulator (plain TypeScript, no workerd) and runs it on Node. See src/sim/cli.ts.
import { build } from "esbuild";
import { mkdirSync, rmSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "100" },
    from: { type: "string", default: "1" },
    seed: { type: "string" },
    trace: { type: "boolean", default: false },
    mode: { type: "string" },
    guest: { type: "string" },
    mutation: { type: "string" },
    memory: { type: "boolean", default: false },
    pages: { type: "string" },
  },
});
mkdirSync(".wrangler/sim", { recursive: true });
// One bundle per process: two runs started together (the halves of a long run) must not read each other's half-written file.
const outfile = `.wrangler/sim/cli-${process.pid}.mjs`;
await build({
  entryPoints: ["src/sim/cli.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  outfile,
  loader: { ".s": "text" },
  sourcemap: "inline",
  logLevel: "warning",
});
// --memory measures heap peaks: it needs a garbage collector it can call.
if (values.memory && typeof globalThis.gc !== "function") {
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(process.execPath, ["--expose-gc", ...process.argv.slice(1)], { stdio: "inherit" });
  rmSync(outfile, { force: true });
  process.exit(r.status ?? 1);
}
process.setSourceMapsEnabled(true);
const { main } = await import(pathToFileURL(outfile).href).finally(() => rmSync(outfile, { force: true }));
process.exitCode = (await main(values)) > 0 ? 1 : 0;
