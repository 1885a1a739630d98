#!/usr/bin/env node
// The `kemari` CLI (package.json "bin"): `npx kemari --help` in a checkout.
// Bundles src/cli/main.ts for Node with esbuild (as scripts/sim.mjs does the
// simulator) and runs it; the exit code is the CLI's (src/cli/main.ts).
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(root, ".wrangler/cli/kemari.mjs");
mkdirSync(dirname(outfile), { recursive: true });
await build({
  entryPoints: [join(root, "src/cli/main.ts")],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  outfile,
  packages: "external",
  logLevel: "error",
});
const { main } = await import(pathToFileURL(outfile).href);
process.exitCode = await main(process.argv.slice(2));
