#!/usr/bin/env node
// Responsiveness test (`npm run test:responsive`): requests from outside get
// in while guests work. It must run against `wrangler dev` over HTTP: workerd
// takes in a request from the network only once its event loop goes idle, so
// an in-process test (vitest-plugin's fetch) cannot see the stalls this guards
// against. Starts wrangler dev on 127.0.0.1:8797 and measures, sequentially,
// the status of a busy guest and of an idle one while the busy one:
//   - computes (mode none): every slice ends in a timer turn;
//   - checkpoints ~63 MiB at every event (a 64 MiB guest dirtying 16,000
//     pages a round), in modes kemari and remus: frames of 260 KiB, each but
//     a checkpoint's first after a timer turn.
//   - checkpoints the same over an 80 ms, 1 Gbit/s modelled link (an 8 MiB window of 260 KiB frames);
//   - syncs at every event, stop-and-wait, over an 80 ms modelled round trip;
//   - is stepped by a client, 10 M instructions a request, syncing at every event.
// Then fault requests (heals) and pauses of the busy guest, five of each, and its delete. It prints every figure, and fails
// when a median exceeds LIMIT_MS (the issue's 100 ms) or any request MAX_MS:
// before these fixes a status took ~300 ms behind one computing guest and
// 2–4 s behind the checkpoints, and 113–145 ms with 1 MiB frames. This
// machine's speed swings by up to 2× within minutes, so a case over the limit
// is measured once more (both figures printed) before it counts as a failure.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { apiAnswers, killServer, startWranglerDev, stopAfter } from "./wrangler-dev.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const PORT = Number(process.env.RESPONSIVE_PORT || 8797);
const TOKEN = "responsive-token";
const API = `http://127.0.0.1:${PORT}/api`;
const H = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
const LIMIT_MS = Number(process.env.RESPONSIVE_LIMIT_MS || 100);
const MAX_MS = 1500;
const SAMPLES = 12;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
let server = null;
let serverLog = "";
const stateDir = mkdtempSync(join(tmpdir(), "kemari-responsive-"));
const failures = [];

async function api(method, path, body) {
  const res = await fetch(`${API}${path}`, { method, headers: H, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

async function timed(f) {
  const t0 = performance.now();
  await f();
  return Math.round(performance.now() - t0);
}

const serving = () => apiAnswers(API, TOKEN);

async function cleanup() {
  killServer(server);
  rmSync(stateDir, { recursive: true, force: true });
}

/**
 * Status of the busy guest and of the idle one, alternately; then fault requests, pauses and the
 * delete of the busy one (its last act). A guest a client is stepping (`stepped`) gets no pause,
 * resume or delete here: the steps own its run state.
 */
async function measure(what, busy, idle, { stepped = false } = {}) {
  let found = await sample(busy, idle);
  if (breaches(found).length > 0) {
    console.log(`${what}: ${report(found)} — over ${LIMIT_MS} ms; measuring again`);
    found = await sample(busy, idle);
  }
  // Control requests, each five times (medians against the limit too): a fault request (a heal: it
  // changes nothing on a connected host; it goes through the switch to every host), pause (then resume).
  const faults = [];
  const pauses = [];
  for (let i = 0; i < 5; i++) {
    if (busy.mode !== "none") faults.push(await timed(() => api("POST", `/guests/${busy.id}/faults`, { target: "secondary", kind: "heal" })));
    if (stepped) continue;
    pauses.push(await timed(() => api("POST", `/guests/${busy.id}/pause`)));
    await api("POST", `/guests/${busy.id}/resume`);
  }
  let del = null;
  if (!stepped) {
    await api("POST", `/guests/${busy.id}/pause`);
    del = await timed(() => api("DELETE", `/guests/${busy.id}`));
  }
  const control = [...(faults.length > 0 ? [["a fault", faults]] : []), ...(pauses.length > 0 ? [["pause", pauses]] : [])];
  console.log(`${what}: ${report(found)}; ${report(control)}${del === null ? "" : `; delete ${del} ms`}`);
  for (const b of [...breaches(found), ...breaches(control)]) failures.push(`${what}: ${b}`);
  if (del !== null && del > MAX_MS) failures.push(`${what}: delete ${del} ms (> ${MAX_MS} ms)`);
}

async function sample(busy, idle) {
  const own = [];
  const other = [];
  for (let i = 0; i < SAMPLES; i++) {
    own.push(await timed(() => api("GET", `/guests/${busy.id}`)));
    other.push(await timed(() => api("GET", `/guests/${idle.id}`)));
  }
  return [["its status", own], ["another guest's status", other]];
}

const report = (found) => found.map(([name, xs]) => `${name} median ${median(xs)} ms (max ${Math.max(...xs)})`).join(", ");

function breaches(found) {
  const out = [];
  for (const [name, xs] of found) {
    if (median(xs) > LIMIT_MS) out.push(`${name} median ${median(xs)} ms > ${LIMIT_MS} ms (${xs.join(" ")})`);
    if (Math.max(...xs) > MAX_MS) out.push(`${name} max ${Math.max(...xs)} ms > ${MAX_MS} ms (${xs.join(" ")})`);
  }
  return out;
}

const timer = stopAfter({ name: "responsive", limitMs: 240_000, cleanup, onTimeout: () => console.log(serverLog.slice(-4000)) });
try {
  server = await startWranglerDev({
    root, port: PORT, vars: { API_TOKEN: TOKEN }, persistTo: stateDir, timeoutMs: 60_000, what: "the API", serving,
    onOutput: (chunk) => (serverLog = (serverLog + chunk.toString()).slice(-100_000)),
  });
  // NOTIFYs its console for ever: in every-event mode, a sync every few instructions.
  const NOTIFY_LOOP = readFileSync(join(root, "test/helpers/notify-loop.s"), "utf8");
  const idle = await api("POST", "/guests", { image: { asm: "_start:\n  li a7, 2\n  ecall\n  j _start\n" }, mode: "none" });

  const spin = await api("POST", "/guests", { image: { asm: "_start:\n  addi s0, s0, 1\n  j _start\n" }, mode: "none" });
  await sleep(500);
  await measure("a computing guest (mode none)", spin, idle);

  const stress = readFileSync(join(root, "guests/stress.s"), "utf8")
    .replace(/^\.equ PAGES, \d+/m, ".equ PAGES, 16000")
    .replace(/^\.equ REGION, \d+/m, ".equ REGION, 16000")
    .replace(/^\.equ ROUNDS, \d+/m, ".equ ROUNDS, 1000000");
  /** A 64 MiB guest with checkpoints of its whole memory under way. */
  const heavyGuest = async (options) => {
    const heavy = await api("POST", "/guests", { image: { asm: stress }, memoryPages: 16384, ...options });
    for (let t = 0; t < 60; t++) {
      const s = await api("GET", `/guests/${heavy.id}`);
      if ((s.sync?.syncs ?? 0) >= 2 && (s.sync?.last?.pages ?? 0) >= 16000) break;
      await sleep(500);
    }
    return heavy;
  };
  for (const mode of ["kemari", "remus"]) {
    await measure(`a 64 MiB guest checkpointing ~63 MiB at every event (mode ${mode})`, await heavyGuest({ mode }), idle);
  }
  // Across a modelled link a window of frames is the bandwidth-delay product: 8 MiB at 80 ms and 1 Gbit/s
  // (it was one frame that size, and a request waited behind it up to 265 ms).
  const linked = await heavyGuest({ mode: "kemari", latency: { rttMs: 80, mbps: 1000 }, regions: { primary: "weur", secondary: "enam" } });
  await measure("a 64 MiB guest checkpointing ~63 MiB at every event over an 80 ms, 1 Gbit/s link (an 8 MiB window of frames, kemari)", linked, idle);

  // A kemari guest that syncs at every event, stop-and-wait, over an 80 ms modelled round trip:
  // a slice delivers no more events once it has used its time, so one event holds it, not 16 (1.3 s).
  const waiting = await api("POST", "/guests", {
    image: { asm: NOTIFY_LOOP }, mode: "kemari", kemari: { syncOn: "every-event", pipeline: false },
    latency: { rttMs: 80 }, regions: { primary: "weur", secondary: "enam" },
  });
  await sleep(1500);
  await measure("a stop-and-wait kemari guest syncing at every event over an 80 ms round trip", waiting, idle);

  // The same guest paused and stepped by a client, 10 M instructions a request, again and again:
  // each step stops at a slice's bounds and answers what it executed.
  const stepped = await api("POST", "/guests", { image: { asm: NOTIFY_LOOP }, mode: "kemari", paused: true });
  let stepping = true;
  let steps = 0;
  const stepper = (async () => {
    while (stepping) {
      await api("POST", `/guests/${stepped.id}/step`, { instructions: 10_000_000 });
      steps++;
    }
  })();
  await sleep(500);
  await measure("a kemari guest stepped 10 M instructions a request, syncing at every event", stepped, idle, { stepped: true });
  stepping = false;
  await stepper;
  if (steps < 5) failures.push(`the stepped guest took only ${steps} steps`);
  await api("DELETE", `/guests/${stepped.id}`);
  await api("DELETE", `/guests/${idle.id}`);
} catch (e) {
  failures.push(String(e instanceof Error ? e.stack : e));
}
clearTimeout(timer);
await cleanup();
if (failures.length > 0) {
  console.log(`responsive: FAILED\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("responsive: passed");
