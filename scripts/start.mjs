#!/usr/bin/env node
// `npm start`: the API and the dashboard on http://127.0.0.1:8787 under
// wrangler dev (Miniflare/workerd), with the documented local token "dev"
// unless API_TOKEN is set in the environment.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const wrangler = fileURLToPath(new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url));
const token = process.env.API_TOKEN || "dev";
const port = process.env.PORT || "8787";
const args = [wrangler, "dev", "--ip", "127.0.0.1", "--port", port, "--var", `API_TOKEN:${token}`, ...process.argv.slice(2)];

console.log(`Kemari: http://127.0.0.1:${port}/  (API token: ${process.env.API_TOKEN ? "from API_TOKEN" : '"dev"'})`);
const child = spawn(process.execPath, args, {
  stdio: "inherit",
  env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code) => process.exit(code ?? 0));
