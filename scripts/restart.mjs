#!/usr/bin/env node
// Restart test (`npm run test:restart`): the whole local server restarts —
// what `npm start` restarting, or a deploy, does to every guest — and no
// protected guest is lost, and what the outside world saw stays true.
//
// Starts `wrangler dev` on 127.0.0.1:8798 with a throwaway token, a fresh
// --persist-to directory and the test-only hold TEST_HOLD_REPROTECTION_MS
// (a re-protection after a takeover stays open that long). In modes kemari
// and remus it creates a counter guest that will be crashed, a counter guest
// that will not, and a long journal guest; a client drives each counter
// (client 0, seq 1, 2, 3 …, retrying each request until its reply is out).
// The primary of each crash counter is crashed; once those guests are
// re-protecting under generation ≥ 1 (held open), everything is killed hard
// (SIGKILL of wrangler's process group: workerd too) and started again on
// the same state. Then, for every guest:
//   - it comes back (not lost, not crashed) under a newer generation;
//   - everything seen before is a prefix of what is seen now: the console
//     text, and packets by index (same index, same bytes), with no gap;
//   - every counter reply is exactly-once (counter = seq for the one client),
//     and the clients get several more replies after the restart;
//   - the journal guests print every round's letter and "ok", and halt with
//     exit code ROUNDS·(ROUNDS+1)/2;
//   - every guest ends "protected".
// Exits 0 on success; 1 with the reason and the last wrangler output.
import { Buffer } from "node:buffer";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startWranglerDev, stopAfter } from "./wrangler-dev.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const PORT = Number(process.env.RESTART_PORT || 8798);
const TOKEN = "restart-token";
const BASE = `http://127.0.0.1:${PORT}`;
/**
 * The re-protection hold before the restart: longer than the test needs to
 * kill the server inside it. With the journals running flat out, every API
 * call on this one workerd takes seconds, so the margin is wide.
 */
const HOLD_BEFORE_MS = 45_000;
/** After the restart: short, so the takeovers it causes are re-protected through the hold too, quickly. */
const HOLD_AFTER_MS = 2_000;
/**
 * Journal rounds: still running at the restart, done within a minute after
 * it. Two journals side by side run ≈ 60 (kemari) and ≈ 30 (remus) rounds a
 * second here; each has done some hundreds at the restart.
 */
const ROUNDS = Number(process.env.RESTART_ROUNDS || 3000);
const DISK_SECTORS = ROUNDS + 8;
const HEARTBEAT = { intervalMs: 100, timeoutMs: 1000 };
/** Counter replies each client must get after the restart. */
const REPLIES_AFTER = 5;
const COMEBACK_MS = 30_000;
/** The journals must halt this long after the restart, and never stall this long. */
const JOURNAL_DONE_MS = 100_000;
const JOURNAL_STALL_MS = 20_000;
const HARD_LIMIT_MS = 200_000;

const started = Date.now();
let server = null;
let serverLog = "";
let stateDir = null;
let stopping = false;
/** How often wrangler dev reloaded the Worker by itself (a source file changed during the run). */
let reloads = 0;

const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const log = (msg) => console.log(`[${elapsed().padStart(7)}] ${msg}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the server ----

async function serving() {
  try {
    const res = await fetch(`${BASE}/api/examples`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: globalThis.AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

async function startServer(holdMs) {
  if (await serving()) throw new Error(`something already serves ${BASE}; stop it first`);
  serverLog += `\n===== wrangler dev (hold ${holdMs} ms) at ${elapsed()} =====\n`;
  server = await startWranglerDev({
    root, port: PORT, vars: { API_TOKEN: TOKEN, TEST_HOLD_REPROTECTION_MS: holdMs }, persistTo: stateDir, timeoutMs: 60_000, what: "the API", serving,
    onOutput: (chunk) => {
      if (process.env.RESTART_DEBUG) process.stderr.write(chunk);
      reloads += (chunk.toString().match(/Reloading local server/g) ?? []).length;
      serverLog = (serverLog + chunk.toString()).slice(-400_000);
    },
  });
}

/** SIGKILL the whole process group (wrangler, workerd): a crash, not a shutdown. */
async function killServer() {
  const child = server;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once("exit", resolve));
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    return;
  }
  await Promise.race([gone, sleep(5000)]);
  // workerd may take a moment to go with its group; wait until the port is free.
  const until = Date.now() + 10_000;
  while (Date.now() < until && (await serving())) await sleep(200);
}

async function cleanup() {
  stopping = true;
  await killServer();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  stateDir = null;
}

// ---- the API ----

async function api(method, path, { json, bytes, timeoutMs = 15_000 } = {}) {
  const headers = { authorization: `Bearer ${TOKEN}` };
  let body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(json);
  } else if (bytes !== undefined) {
    headers["content-type"] = "application/octet-stream";
    body = bytes;
  }
  const res = await fetch(`${BASE}${path}`, { method, headers, body, signal: globalThis.AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** Retry transient failures (the server restarting, a guest between hosts) until `ms` have passed. */
async function retrying(what, ms, fn) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof Verdict) throw err;
      if (Date.now() > until) throw new Error(`${what}: still failing after ${ms / 1000} s: ${err.message}`, { cause: err });
      await sleep(300);
    }
  }
}

/** A broken promise of the system (as opposed to a transient failure). */
class Verdict extends Error {}

// ---- the guests ----

const counterAsm = readFileSync(join(root, "guests", "counter.s"), "utf8");
const journalSource = readFileSync(join(root, "guests", "journal.s"), "utf8");
if (!/^\.equ ROUNDS, \d+$/m.test(journalSource)) throw new Error("guests/journal.s has no `.equ ROUNDS, n` line");
const journalAsm = journalSource.replace(/^\.equ ROUNDS, \d+$/m, `.equ ROUNDS, ${ROUNDS}`);
const journalSum = (ROUNDS * (ROUNDS + 1)) / 2;
const journalText = Array.from({ length: ROUNDS }, (_, i) => String.fromCharCode(97 + ((i + 1) % 26))).join("") + "\nok\n";

const guests = [];

async function createGuest(name, kind, mode, crash) {
  const body = {
    name,
    mode,
    image: { asm: kind === "counter" ? counterAsm : journalAsm },
    heartbeat: HEARTBEAT,
    ...(kind === "journal" ? { diskSectors: DISK_SECTORS } : {}),
  };
  const status = await api("POST", "/api/guests", { json: body });
  const g = { name, kind, mode, crash, id: status.id, console: "", packets: [], seq: 0, genAtKill: null, seqAtKill: null, statusAtKill: null };
  guests.push(g);
  return g;
}

/**
 * Read everything the guest has output and check it against everything seen
 * before: text and packets only ever grow; a packet's bytes never change;
 * indices run 0, 1, 2 … with no gap; a counter reply is exactly-once.
 */
function observe(g, { console = true } = {}) {
  // One read at a time per guest: a slower, older read must not be compared with a newer one.
  const next = (g.reading ?? Promise.resolve()).catch(() => undefined).then(() => readOutputs(g, console));
  g.reading = next;
  return next;
}

async function readOutputs(g, withConsole) {
  if (withConsole) await readConsole(g);
  await readPackets(g);
  return g;
}

async function readConsole(g) {
  const { text } = await api("GET", `/api/guests/${g.id}/console?from=0`);
  if (!text.startsWith(g.console)) {
    throw new Verdict(`${g.name}: console output changed: it was ${JSON.stringify(tail(g.console))} (${g.console.length} chars), now ${JSON.stringify(tail(text))} (${text.length} chars)`);
  }
  g.console = text;
  if (g.kind === "journal" && !journalText.startsWith(text)) {
    throw new Verdict(`${g.name}: console ${JSON.stringify(tail(text))} (${text.length} chars) is not a prefix of the journal's output`);
  }
}

async function readPackets(g) {
  const packets = [];
  for (let from = 0; ; ) {
    const page = await api("GET", `/api/guests/${g.id}/outbound?from=${from}`);
    packets.push(...page.packets);
    // A page holds at most 1000 packets (MAX_PACKETS_READ in durable-objects/guest-switch.ts); a shorter one is the last.
    if (page.packets.length < 1000 || page.next === from) break;
    from = page.next;
  }
  packets.forEach((p, i) => {
    if (p.index !== i) throw new Verdict(`${g.name}: packet indices have a gap: position ${i} has index ${p.index} (indices ${packets.map((q) => q.index).join(",")})`);
    const before = g.packets[i];
    if (before !== undefined && before !== p.data) throw new Verdict(`${g.name}: packet ${i} changed from ${describePacket(before)} to ${describePacket(p.data)}`);
  });
  if (packets.length < g.packets.length) throw new Verdict(`${g.name}: ${g.packets.length} packets were out, now only ${packets.length}`);
  g.packets = packets.map((p) => p.data);
  if (g.kind === "counter") {
    for (const [i, data] of g.packets.entries()) {
      const r = decodeReply(data);
      if (!r || r.client !== 0 || r.counter !== r.seq || r.seq < 1 || r.seq > g.seq) {
        throw new Verdict(`${g.name}: reply ${i} is ${describePacket(data)}; expected client 0, counter = seq (exactly once), seq ≤ ${g.seq}`);
      }
    }
  }
}

function tail(s) {
  return s.length > 60 ? `…${s.slice(-60)}` : s;
}

function decodeReply(b64) {
  const b = Buffer.from(b64, "base64");
  if (b.length !== 12) return null;
  return { client: b.readUInt32LE(0), seq: b.readUInt32LE(4), counter: b.readUInt32LE(8) };
}

function describePacket(b64) {
  const r = decodeReply(b64);
  return r ? `{client ${r.client}, seq ${r.seq}, counter ${r.counter}}` : `<${Buffer.from(b64, "base64").toString("hex")}>`;
}

function request(client, seq) {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(client, 0);
  b.writeUInt32LE(seq, 4);
  return b;
}

/** The counter's client: seq 1, 2, 3 …, each sent (again every 1.5 s) until its reply is out. Runs until stopped. */
async function runClient(g) {
  while (!stopping && !g.stopClient) {
    const seq = g.seq + 1;
    g.seq = seq;
    const t0 = Date.now();
    let sentAt = 0;
    for (;;) {
      if (stopping) return;
      if (Date.now() - t0 > g.requestBudgetMs()) throw new Verdict(`${g.name}: no reply to seq ${seq} within ${g.requestBudgetMs() / 1000} s (status: ${JSON.stringify(await statusSummary(g))})`);
      try {
        if (Date.now() - sentAt > 1500) {
          sentAt = Date.now();
          await api("POST", `/api/guests/${g.id}/inbound`, { bytes: request(0, seq) });
        }
        await observe(g, { console: false });
        if (g.packets.some((p) => decodeReply(p)?.seq === seq)) break;
      } catch (err) {
        if (err instanceof Verdict) throw err;
        // transient: the server restarting, the guest between hosts
      }
      await sleep(200);
    }
    g.replied = seq;
    if (process.env.RESTART_DEBUG) log(`  ${g.name}: reply to seq ${seq} after ${Date.now() - t0} ms`);
    await sleep(150);
  }
}

async function statusSummary(g) {
  try {
    return summarize(await api("GET", `/api/guests/${g.id}`, { timeoutMs: 5000 }));
  } catch (err) {
    return { error: err.message };
  }
}

function summarize(s) {
  return {
    id: s.id, mode: s.mode, generation: s.generation, protection: s.protection, state: s.state, exitCode: s.exitCode, crash: s.crash,
    hosts: s.hosts, failovers: (s.failovers ?? []).map((f) => ({ generation: f.generation, reason: f.reason, from: f.from?.name, to: f.to?.name, takeoverMs: f.takeoverMs })),
    instructions: s.instructions, sync: s.sync ? { seq: s.sync.seq, syncs: s.sync.syncs, heldOutputs: s.sync.heldOutputs } : null,
  };
}

async function waitFor(what, ms, fn) {
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const r = await fn();
      if (r === true) return;
      last = typeof r === "string" ? r : JSON.stringify(r);
    } catch (err) {
      if (err instanceof Verdict) throw err;
      last = err.message;
    }
    if (Date.now() > until) throw new Verdict(`${what}: not within ${ms / 1000} s (last: ${last})`);
    if (process.env.RESTART_DEBUG) log(`  waiting: ${what}: ${last}`);
    await sleep(250);
  }
}

function lostOrCrashed(s) {
  return s.state === "crashed" || (s.crash && s.crash.reason);
}

// ---- the test ----

async function main() {
  stateDir = mkdtempSync(join(tmpdir(), "kemari-restart-"));
  log(`starting wrangler dev on ${BASE} (state ${stateDir}, hold ${HOLD_BEFORE_MS} ms)`);
  await startServer(HOLD_BEFORE_MS);
  log("server up");

  // The counters first, alone: a journal runs flat out and slows every other guest on this one workerd.
  for (const mode of ["kemari", "remus"]) {
    await createGuest(`${mode}-counter-crash`, "counter", mode, true);
    await createGuest(`${mode}-counter`, "counter", mode, false);
  }
  const counters = guests.filter((g) => g.kind === "counter");
  const crashed = guests.filter((g) => g.crash);
  log(`created ${counters.map((g) => `${g.name} ${g.id}`).join(", ")}`);

  // Before the restart a reply may wait for a takeover; after it for every guest's takeover and its re-protection.
  let budget = 30_000;
  const clients = counters.map((g) => {
    g.requestBudgetMs = () => budget;
    return runClient(g);
  });
  // A client that fails ends the test at the next phase (its error is the verdict).
  const clientsDone = Promise.all(clients);
  const failFast = clientsDone.then(() => new Promise(() => {}));
  const phase = (p) => Promise.race([p, failFast]);

  const allProtected = (gs) => async () => {
    const ss = await Promise.all(gs.map((g) => api("GET", `/api/guests/${g.id}`)));
    ss.forEach((s, i) => (gs[i].generation = s.generation));
    const bad = ss.filter((s) => s.protection !== "protected");
    return bad.length === 0 || bad.map((s) => `${s.name}: ${s.protection}/${s.generation}`).join("; ");
  };
  await phase(waitFor("every counter protected", 30_000, allProtected(counters)));
  await phase(waitFor("a few replies for every counter", 30_000, async () => counters.every((g) => (g.replied ?? 0) >= 3) || counters.map((g) => `${g.name}: ${g.replied ?? 0}`).join(", ")));
  log(`counters protected; replies so far: ${counters.map((g) => `${g.name} ${g.replied}`).join(", ")}`);

  for (const mode of ["kemari", "remus"]) await createGuest(`${mode}-journal`, "journal", mode, false);
  const journals = guests.filter((g) => g.kind === "journal");
  log(`created ${journals.map((g) => `${g.name} ${g.id}`).join(", ")} (${ROUNDS} rounds)`);
  await phase(waitFor("the journals protected", 30_000, allProtected(journals)));
  log("journals protected");

  await allProtected(crashed)();
  const genBeforeCrash = new Map(crashed.map((g) => [g, g.generation]));
  await Promise.all(crashed.map((g) => api("POST", `/api/guests/${g.id}/faults`, { json: { target: "primary", kind: "crash", at: "now" } })));
  log(`crashed the primaries of ${crashed.map((g) => g.name).join(", ")}`);
  await phase(waitFor("the crashed guests taken over and re-protecting", 15_000, async () => {
    const ss = await Promise.all(crashed.map((g) => api("GET", `/api/guests/${g.id}`)));
    return ss.every((s, i) => s.generation > genBeforeCrash.get(crashed[i]) && s.generation >= 1 && s.protection === "reprotecting") || ss.map((s) => `${s.name}: ${s.protection}/${s.generation}`).join("; ");
  }));
  log("the crashed guests are re-protecting (held open)");

  // What the outside world has seen, just before the restart: it must all stay true.
  // All at once: the re-protections are held open only so long.
  await Promise.all(guests.map(async (g) => {
    const [s] = await Promise.all([api("GET", `/api/guests/${g.id}`), observe(g)]);
    g.statusAtKill = summarize(s);
    g.genAtKill = s.generation;
  }));
  for (const g of crashed) {
    if (g.statusAtKill.protection !== "reprotecting") throw new Error(`${g.name} finished re-protecting before the restart (the server is slower than the hold of ${HOLD_BEFORE_MS} ms allows): ${JSON.stringify(g.statusAtKill)}`);
  }
  for (const j of journals) {
    if (j.statusAtKill.state === "halted") throw new Error(`${j.name} finished before the restart: raise ROUNDS (now ${ROUNDS})`);
  }
  const snapshot = guests.map((g) => ({ g, console: g.console, packets: [...g.packets] }));
  for (const g of counters) g.seqAtKill = g.seq;
  await killServer();
  log("killed wrangler and workerd (SIGKILL)");
  log(`before the restart: ${guests.map((g) => `${g.name} gen ${g.genAtKill} ${g.statusAtKill.protection} ${g.kind === "journal" ? `${g.console.length}/${journalText.length} chars` : `${g.packets.length} packets, seq ${g.seqAtKill}`}`).join("; ")}`);
  budget = 90_000;
  await startServer(HOLD_AFTER_MS);
  const restartedAt = Date.now();
  log(`server up again (hold ${HOLD_AFTER_MS} ms)`);

  await phase(Promise.all(guests.map((g) => waitFor(`${g.name} back under a newer generation`, COMEBACK_MS, async () => {
    const s = await api("GET", `/api/guests/${g.id}`);
    if (lostOrCrashed(s)) throw new Verdict(`${g.name} is lost after the restart: ${JSON.stringify(summarize(s))}`);
    return (s.generation > g.genAtKill && s.protection !== "failing-over") || `${s.protection}/${s.generation}`;
  }))));
  const marks = { back: Date.now() - restartedAt };
  log("every guest is back");

  // Everything seen before is still there, unchanged.
  for (const { g, console: text, packets } of snapshot) {
    await retrying(`${g.name} outputs`, 15_000, () => observe(g));
    if (!g.console.startsWith(text)) throw new Verdict(`${g.name}: console before the restart is not a prefix of the console now`);
    packets.forEach((p, i) => {
      if (g.packets[i] !== p) throw new Verdict(`${g.name}: packet ${i} was ${describePacket(p)} before the restart, now ${g.packets[i] === undefined ? "missing" : describePacket(g.packets[i])}`);
    });
  }
  log("outputs from before the restart are all still there, unchanged");

  await phase(waitFor(`${REPLIES_AFTER} more replies for every counter`, 60_000, async () => counters.every((g) => (g.replied ?? 0) >= g.seqAtKill + REPLIES_AFTER) || counters.map((g) => `${g.name}: ${g.replied ?? 0}/${g.seqAtKill + REPLIES_AFTER}`).join(", ")));
  for (const g of counters) g.stopClient = true;
  await phase(clientsDone);
  marks.counters = Date.now() - restartedAt;
  log(`counters answered on, exactly once: ${counters.map((g) => `${g.name} seq ${g.replied}`).join(", ")}`);

  const progress = new Map(journals.map((g) => [g, { chars: -1, at: Date.now() }]));
  await waitFor("the journals halted", Math.max(10_000, restartedAt + JOURNAL_DONE_MS - Date.now()), async () => {
    const ss = await Promise.all(journals.map((g) => api("GET", `/api/guests/${g.id}`)));
    for (const [i, s] of ss.entries()) {
      const g = journals[i];
      if (lostOrCrashed(s)) throw new Verdict(`${g.name} crashed: ${JSON.stringify(summarize(s))}`);
      await observe(g);
      const p = progress.get(g);
      if (g.console.length > p.chars) Object.assign(p, { chars: g.console.length, at: Date.now() });
      else if (s.state !== "halted" && Date.now() - p.at > JOURNAL_STALL_MS) {
        throw new Verdict(`${g.name} made no progress for ${JOURNAL_STALL_MS / 1000} s (${g.console.length}/${journalText.length} chars): ${JSON.stringify(summarize(s))}`);
      }
    }
    return ss.every((s) => s.state === "halted") || journals.map((g, i) => `${g.name}: ${ss[i].state}, ${g.console.length}/${journalText.length} chars`).join("; ");
  });
  for (const g of journals) {
    const s = await api("GET", `/api/guests/${g.id}`);
    await observe(g);
    if (s.exitCode !== journalSum) throw new Verdict(`${g.name} halted with exit code ${s.exitCode}, expected ${journalSum}`);
    if (g.console !== journalText) throw new Verdict(`${g.name}: console ends ${JSON.stringify(tail(g.console))} (${g.console.length} chars), expected ${journalText.length} chars ending ${JSON.stringify(tail(journalText))}`);
  }
  marks.journals = Date.now() - restartedAt;
  log(`journals printed all ${ROUNDS} rounds and "ok", exit code ${journalSum}`);

  await waitFor("every guest protected", 30_000, async () => {
    const ss = await Promise.all(guests.map((g) => api("GET", `/api/guests/${g.id}`)));
    for (const g of guests) await observe(g);
    return ss.every((s) => s.protection === "protected") || ss.map((s) => `${s.name}: ${s.protection}/${s.generation}`).join("; ");
  });
  marks.protected = Date.now() - restartedAt;

  const sec = (ms) => `${(ms / 1000).toFixed(1)} s`;
  // wrangler dev reloads the Worker when a source file changes (someone editing while the test runs): one more restart of every guest.
  if (reloads > 0) console.log(`\nrestart: note: wrangler dev also reloaded the Worker ${reloads} time(s) by itself (source files changed during the run)`);
  console.log(`\nrestart: summary (after the restart: every guest back in ${sec(marks.back)}, counters ${REPLIES_AFTER}+ more replies in ${sec(marks.counters)}, journals halted in ${sec(marks.journals)}, all protected in ${sec(marks.protected)})`);
  for (const g of guests) {
    const s = summarize(await api("GET", `/api/guests/${g.id}`));
    const what = g.kind === "counter" ? `seq ${g.seqAtKill} at the restart → ${g.replied}, ${g.packets.length} replies` : `${snapshot.find((x) => x.g === g).console.length} → ${g.console.length} chars, exit ${s.exitCode}`;
    console.log(`  ${g.name.padEnd(20)} generation ${g.genAtKill} (${g.statusAtKill.protection}) → ${s.generation} (${s.protection}); ${what}`);
  }
}

/** The end of wrangler's output, without the lines of requests that succeeded. */
function printServerLog() {
  if (!serverLog) return;
  const ok = /^\[wrangler:info\] (GET|POST|DELETE) \S+ 2\d\d /;
  // eslint-disable-next-line no-control-regex
  const lines = serverLog.replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => l.trim() && !ok.test(l));
  console.log(`--- last wrangler output (successful requests left out) ---\n${lines.slice(-50).join("\n")}`);
}

const hardStop = stopAfter({ name: "restart", limitMs: HARD_LIMIT_MS, cleanup, onTimeout: printServerLog });

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  stopping = true;
  console.log(`\nrestart: FAILED after ${elapsed()}: ${err.message}`);
  for (const g of guests) console.log(`  ${g.name} ${g.id}: ${JSON.stringify(await statusSummary(g))}`);
  if (reloads > 0) console.log(`(wrangler dev also reloaded the Worker ${reloads} time(s) by itself: source files changed during the run)`);
  printServerLog();
} finally {
  await cleanup();
  clearTimeout(hardStop);
}
console.log(`restart: ${failed ? "FAILED" : "passed"} (${elapsed()})`);
process.exit(failed ? 1 : 0);
