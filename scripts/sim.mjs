#!/usr/bin/env node
// npm run sim -- --seeds N: bundles the simulator (plain TypeScript, no workerd) and runs it on Node.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";

mkdirSync(".wrangler/sim", { recursive: true });
await build({
  entryPoints: ["src/sim/cli.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  outfile: ".wrangler/sim/cli.mjs",
  loader: { ".s": "text" },
  logLevel: "warning",
  sourcemap: "inline",
});
const r = spawnSync(process.execPath, ["--enable-source-maps", ".wrangler/sim/cli.mjs", ...process.argv.slice(2)], { stdio: "inherit" });
process.exit(r.status ?? 1);
