// The interpreter through the API (`npm run bench`): a long compute-bound guest
// in mode none under `wrangler dev`, created and read over HTTP as a user
// would, its instructions per second taken from its status over a few
// windows. Over HTTP and not inside vitest: the same guest runs at about half
// the rate inside the test runner's workerd (its harness, not the guest's
// host), which would say nothing about what a user gets.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiAnswers, killServer, startWranglerDev } from "./wrangler-dev.mjs";

const PORT = Number(process.env.BENCH_API_PORT || 8799);
const TOKEN = "bench-token";
const API = `http://127.0.0.1:${PORT}/api`;
const H = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(method, path, body) {
  const res = await fetch(`${API}${path}`, { method, headers: H, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

/** Instructions per second of `asm` in mode none, per window of `windowMs` (after a warm-up). */
export async function rateThroughApi(root, asm, { windows = 5, windowMs = 3000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "kemari-bench-api-"));
  let log = "";
  let server = null;
  try {
    server = await startWranglerDev({
      root, port: PORT, vars: { API_TOKEN: TOKEN }, persistTo: dir, timeoutMs: 60_000, what: "the API",
      serving: () => apiAnswers(API, TOKEN), onOutput: (chunk) => (log += chunk),
    });
    const g = await api("POST", "/guests", { image: { asm }, mode: "none" });
    await sleep(1000);
    const rates = [];
    let a = await api("GET", `/guests/${g.id}`);
    let t0 = performance.now();
    for (let w = 0; w < windows; w++) {
      await sleep(windowMs);
      const b = await api("GET", `/guests/${g.id}`);
      const t1 = performance.now();
      if (b.state !== "running") throw new Error(`the guest stopped: ${b.state}`);
      rates.push((b.instructions - a.instructions) / ((t1 - t0) / 1000));
      a = b;
      t0 = t1;
    }
    await api("DELETE", `/guests/${g.id}`);
    return rates;
  } catch (e) {
    console.error(log.slice(-3000));
    throw e;
  } finally {
    killServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}
