// Starting `wrangler dev` for the end-to-end scripts (e2e, restart, responsive, cli, check):
// on 127.0.0.1 only, in its own process group (so workerd goes down with it),
// with its output kept for the failure report.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wrangler needs Node 22; the devDependency `node` brings it. */
export function nodeBinary(root) {
  const local = join(root, "node_modules", "node", "bin", "node");
  return existsSync(local) ? local : process.execPath;
}

/**
 * Start `wrangler dev` and wait until `serving()` says it answers.
 * `vars` become `--var K:V`; `onOutput` receives every chunk it prints.
 * Resolves to the child process.
 */
export async function startWranglerDev({ root, port, vars, persistTo, onOutput, serving, timeoutMs, what }) {
  const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
  const args = [wrangler, "dev", "--ip", "127.0.0.1", "--port", String(port), ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]), "--persist-to", persistTo];
  const child = spawn(nodeBinary(root), args, {
    cwd: root,
    detached: true, // its own process group, so workerd goes down with it
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
  });
  child.stdout.on("data", onOutput);
  child.stderr.on("data", onOutput);
  let exited = null;
  child.on("exit", (code, signal) => (exited = { code, signal }));
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (exited) throw new Error(`wrangler dev exited early (${exited.code ?? exited.signal})`);
    if (await serving()) return child;
    await sleep(250);
  }
  throw new Error(`wrangler dev did not serve ${what} within ${timeoutMs / 1000} s`);
}

/**
 * A script's safety net: fail after `limitMs` (calling `onTimeout` first, for
 * the log), and clean up on Ctrl-C. Returns the timer, to clear at the end.
 */
export function stopAfter({ name, limitMs, cleanup, onTimeout = () => {} }) {
  const timer = setTimeout(() => {
    console.log(`${name}: FAILED: still running after ${limitMs / 1000} s`);
    onTimeout();
    void cleanup().finally(() => process.exit(1));
  }, limitMs);
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => void cleanup().finally(() => process.exit(130)));
  return timer;
}

/** Does the API at `api` (…/api) answer with `token`? What `startWranglerDev` waits for. */
export async function apiAnswers(api, token) {
  try {
    return (await fetch(`${api}/examples`, { headers: { authorization: `Bearer ${token}` }, signal: globalThis.AbortSignal.timeout(2000) })).ok;
  } catch {
    return false;
  }
}

/** Stop a server `startWranglerDev` started (its whole process group), if it still runs. */
export function killServer(server) {
  if (!server || server.exitCode !== null) return;
  try {
    process.kill(-server.pid, "SIGKILL");
  } catch {
    // already gone
  }
}
