/**
 * `kemari check FILE`: does my guest survive its hosts dying?
 *
 * The project's own transparency oracle, handed to its users. The guest runs
 * once without failures (twice, to see it is deterministic), then `runs`
 * times with a crash — of the primary or the secondary, at a random
 * instruction count (`at: {instruction: n}`) or at a protocol step — in the
 * chosen mode, fed the same inbound packets in the same order. Each run's
 * console, packets, exit code and disk digest must equal the failure-free
 * run's. A guest that never halts is compared once its inputs are consumed,
 * it waits, and its outputs are drained.
 */
import { createHash } from "node:crypto";
import type { ApiError, CreateGuestInput, KemariClient, Observed } from "../client.ts";
import { Random } from "../sim/random.ts";
import type { GuestStatus } from "../client.ts";

export type Mode = "kemari" | "remus" | "none";
const STEPS = ["before-transfer", "mid-transfer", "after-ack", "after-release"] as const;
/** Fast failure detection, so a run with a crash takes a second, not the default's three. */
const HEARTBEAT = { intervalMs: 20, timeoutMs: 300 };
/** How long one run may take to settle, by default (`--timeout`). */
export const RUN_TIMEOUT_MS = 60_000;

export interface Crash {
  target: "primary" | "secondary";
  at: (typeof STEPS)[number] | { instruction: number };
}

export interface CheckOptions {
  mode: Mode;
  runs: number;
  seed: number;
  inputs: Uint8Array[];
  /** Extra create options (memory, disk, kemari…). */
  create?: Partial<CreateGuestInput>;
  /** How long one run may take to settle. */
  timeoutMs?: number;
  out: (line: string) => void;
  /** Redraw the progress line (a terminal), or null. */
  progress: ((line: string) => void) | null;
}

export interface CheckResult {
  verdict: "survives" | "differs" | "non-deterministic" | "unsettled";
  differences: string[];
  /** Runs whose crash never happened (a primary crash with no takeover): neither passed nor failed. */
  unexercised: number;
}

/**
 * The crash of random run `i`, at an instruction count: primary and secondary
 * alternate (mode none: the primary only). The primary's count is any the
 * guest reaches; the secondary's is within the last checkpoint the
 * failure-free run had acknowledged (`acked`), so that the secondary does
 * reach it (it crashes once it holds a checkpoint at or past the count).
 */
export function crashFor(rand: () => number, i: number, mode: Mode, instructions: number, acked: number): Crash {
  const secondary = mode !== "none" && i % 2 === 1 && acked > 0;
  const upTo = secondary ? acked : instructions;
  return { target: secondary ? "secondary" : "primary", at: { instruction: 1 + Math.floor(rand() * Math.max(1, upTo - 1)) } };
}

/** A crash at each protocol step, of each host: the runs that follow the random ones (protected modes, when the guest syncs at all). */
export function stepCrashes(): Crash[] {
  return (["primary", "secondary"] as const).flatMap((target) => STEPS.map((at) => ({ target, at })));
}

export function describeCrash(c: Crash): string {
  return `crash ${c.target} at ${typeof c.at === "object" ? `instruction ${c.at.instruction}` : c.at}`;
}

/** The first way two runs differ, in words (null: the same). */
export function firstDifference(want: Observed, got: Observed): string | null {
  if (want.state !== got.state || want.exitCode !== got.exitCode) {
    return `the guest ended ${got.state}${got.exitCode !== null ? ` (exit ${got.exitCode})` : ""}, not ${want.state}${want.exitCode !== null ? ` (exit ${want.exitCode})` : ""}`;
  }
  if (want.console !== got.console) {
    let i = 0;
    while (i < want.console.length && want.console[i] === got.console[i]) i++;
    const around = (s: string) => JSON.stringify(s.slice(Math.max(0, i - 20), i + 40));
    return `console differs at byte ${i}: expected ${around(want.console)}, got ${around(got.console)}`;
  }
  for (let i = 0; i < Math.max(want.packets.length, got.packets.length); i++) {
    if (want.packets[i] !== got.packets[i]) return `packet ${i} differs: expected ${want.packets[i] ?? "none"}, got ${got.packets[i] ?? "none"}`;
  }
  if (want.disk !== got.disk) return `the disk differs (sha-256 ${want.disk.slice(0, 12)}… expected, ${got.disk.slice(0, 12)}… got)`;
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const netRx = (s: GuestStatus) => s.devices.find((d) => d.kind === "net-rx");
const ended = (s: GuestStatus) => s.state === "halted" || s.state === "crashed";
/**
 * Nothing more will come out: ended or waiting, no output on its way, no
 * epoch holding any, no takeover under way — and no re-protection either: the
 * disk compared is the acknowledged one (what a takeover would resume with),
 * and while a new secondary is being given its full checkpoint the writes a
 * failed checkpoint carried are not acknowledged yet (seen once in CI, under
 * load: a secondary crashed near the end of workload.s, and the guest halted
 * before its replacement held the disk).
 */
const drained = (s: GuestStatus) =>
  (ended(s) || s.state === "waiting") && s.outputsInFlight === 0 && (s.sync?.heldOutputs ?? 0) === 0 && !s.sync?.inFlight &&
  s.protection !== "failing-over" && s.protection !== "reprotecting";

/** A request the API refuses with 503 (the guest is moving to a new primary): asked again until `deadline`, as a client would. */
async function retrying<T>(deadline: number, f: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if ((e as ApiError).name !== "ApiError" || (e as ApiError).status !== 503 || Date.now() > deadline) throw e;
      await sleep(50);
    }
  }
}

/** One run: create, arm the crash, resume, feed the inputs, wait until drained; what the outside world saw. */
export async function runOnce(c: KemariClient, image: CreateGuestInput["image"], o: Pick<CheckOptions, "mode" | "inputs" | "create" | "timeoutMs">, crash: Crash | null): Promise<{ seen: Observed; final: GuestStatus }> {
  const timeoutMs = o.timeoutMs ?? RUN_TIMEOUT_MS;
  const g = await c.create({ ...o.create, image, mode: o.mode, paused: true, ...(o.mode === "none" ? {} : { heartbeat: HEARTBEAT }) });
  try {
    if (crash) await c.fault(g.id, { target: crash.target, kind: "crash", at: crash.at });
    await c.resume(g.id);
    const deadline = Date.now() + timeoutMs;
    let s = await retrying(deadline, () => c.status(g.id));
    for (let k = 1; k <= o.inputs.length; k++) {
      // Each packet after the guest has taken the one before and waits for more.
      s = await settle(c, g.id, deadline, timeoutMs);
      if (ended(s)) break;
      let generation = s.generation;
      await retrying(deadline, () => c.send(g.id, o.inputs[k - 1]));
      for (;;) {
        s = await retrying(deadline, () => c.status(g.id));
        if (ended(s) || ((netRx(s)?.rspProd ?? 0) >= k && drained(s))) break;
        // A takeover resumed the guest from a checkpoint that never held the packet: send it again, as a client would.
        if (s.generation !== generation && s.state === "waiting" && drained(s) && (netRx(s)?.rspProd ?? 0) < k) {
          generation = s.generation;
          await retrying(deadline, () => c.send(g.id, o.inputs[k - 1]));
        }
        if (Date.now() > deadline) throw new Error(`input ${k} was not consumed within ${timeoutMs / 1000} s`);
        await sleep(20);
      }
    }
    s = await settle(c, g.id, deadline, timeoutMs);
    return { seen: await observe(c, g.id, s), final: s };
  } finally {
    await c.remove(g.id).catch(() => undefined);
  }
}

/** Wait until the guest has ended or waits with its outputs drained (twice in a row: a flight may be about to land). */
async function settle(c: KemariClient, id: string, deadline: number, timeoutMs: number): Promise<GuestStatus> {
  let calm = 0;
  let last = -1;
  for (;;) {
    const s = await retrying(deadline, () => c.status(id));
    calm = drained(s) && s.instructions === last ? calm + 1 : 0;
    last = s.instructions;
    if (calm >= 2) return s;
    if (Date.now() > deadline) throw new Error(`the guest did not settle within ${timeoutMs / 1000} s (state ${s.state})`);
    await sleep(30);
  }
}

async function observe(c: KemariClient, id: string, s: GuestStatus): Promise<Observed> {
  let text = "";
  for (let from = 0; ; ) {
    const page = await c.console(id, from);
    text += page.text;
    if (page.next === from) break;
    from = page.next;
  }
  const packets: string[] = [];
  for (let from = 0; ; ) {
    const r = await c.outbound(id, from);
    for (const p of r.packets) packets.push(Buffer.from(p.data).toString("hex"));
    if (r.next === from) break;
    from = r.next;
  }
  const hash = createHash("sha256");
  const per = 2048;
  // A guest lost with its host (mode none) has no disk to read: its digest is that of nothing.
  if (s.state !== "crashed" || !/lost/.test(s.crash?.reason ?? "")) {
    for (let sector = 0; sector < s.diskSectors; sector += per) hash.update(await c.disk(id, sector, Math.min(per, s.diskSectors - sector)));
  }
  return { state: s.state, exitCode: s.exitCode, console: text, packets, disk: hash.digest("hex") };
}

function bar(done: number, total: number): string {
  const width = 24;
  const full = Math.round((done / Math.max(1, total)) * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${done}/${total}`;
}

/** The whole check; prints as it goes. */
export async function check(c: KemariClient, image: CreateGuestInput["image"], o: CheckOptions): Promise<CheckResult> {
  let done = 0;
  let total = o.runs + 2;
  const tick = () => o.progress?.(bar(++done, total));
  o.out(`mode ${o.mode}, ${o.runs} runs with a crash at a random instruction count, seed ${o.seed} (replay: --seed ${o.seed}), ${o.inputs.length} input packet(s)`);
  let a: Awaited<ReturnType<typeof runOnce>>;
  let b: typeof a;
  try {
    a = await runOnce(c, image, o, null);
    tick();
    b = await runOnce(c, image, o, null);
    tick();
  } catch (e) {
    if (!(e instanceof Error && /within/.test(e.message))) throw e;
    // A guest that streams forever (or waits with outputs never drained) has no end to compare.
    o.out(`unsettled: without failures ${e.message}; a guest is compared once it halts, or waits with its inputs consumed and its outputs out. Not judged.`);
    return { verdict: "unsettled", differences: [e.message], unexercised: 0 };
  }
  const nd = firstDifference(a.seen, b.seen);
  if (nd) {
    o.out(`non-deterministic: two failure-free runs differ — ${nd}. Not judged (a guest that reads TIME or RANDOM, or races its inputs, differs from itself).`);
    return { verdict: "non-deterministic", differences: [nd], unexercised: 0 };
  }
  const ref = a.seen;
  const acked = a.final.sync?.last?.instructions ?? 0;
  // Syncs after the first (full) checkpoint: the protocol steps have somewhere to happen.
  const syncs = (a.final.sync?.syncs ?? 0) > 1;
  o.out(`failure-free: ${ref.state}${ref.exitCode !== null ? ` (exit ${ref.exitCode})` : ""} after ${a.final.instructions} instructions; ${ref.console.length} console bytes, ${ref.packets.length} packets, disk ${ref.disk.slice(0, 12)}…; the same twice`);
  // The project's seeded source: a run's crashes follow from its seed, so a failing run can be replayed.
  const random = new Random(o.seed);
  const rand = () => random.next();
  const plan: Crash[] = Array.from({ length: o.runs }, (_, i) => crashFor(rand, i, o.mode, a.final.instructions, acked));
  if (o.mode !== "none") {
    if (syncs) plan.push(...stepCrashes());
    else o.out("no checkpoint after the first: the protocol steps are not exercised (the guest makes no output)");
  }
  total = plan.length + 2;
  const differences: string[] = [];
  let unexercised = 0;
  for (const [i, crash] of plan.entries()) {
    let verdict: string;
    try {
      const r = await runOnce(c, image, o, crash);
      const d = firstDifference(ref, r.seen);
      // A primary's crash shows: a takeover (a new generation), or, unprotected, the guest lost.
      const fired = crash.target === "secondary" || r.final.generation > 0 || (o.mode === "none" && r.final.state === "crashed");
      if (d) {
        verdict = `DIFFERS: ${d}`;
        differences.push(`${describeCrash(crash)}: ${d}`);
      } else if (!fired) {
        verdict = "not exercised: the crash never happened (no takeover)";
        unexercised++;
      } else verdict = `same${r.final.generation > 0 ? `, generation ${r.final.generation}` : ""}`;
    } catch (e) {
      if ((e as ApiError).name !== "ApiError" && !(e instanceof Error && /within/.test(e.message))) throw e;
      verdict = `DIFFERS: ${(e as Error).message}`;
      differences.push(`${describeCrash(crash)}: ${(e as Error).message}`);
    }
    tick();
    o.out(`run ${i + 1}/${plan.length}: ${describeCrash(crash)} — ${verdict}`);
  }
  const judged = plan.length - unexercised;
  if (differences.length === 0 && judged === 0) {
    o.out(`not judged: none of the ${plan.length} crashes happened`);
    return { verdict: "unsettled", differences: ["no crash happened"], unexercised };
  }
  if (differences.length === 0) {
    o.out(`survives: ${judged} of ${plan.length} runs with a crash gave the same console, packets, exit code and disk${unexercised ? ` (${unexercised} crash${unexercised > 1 ? "es" : ""} never happened: not counted)` : ""}`);
    return { verdict: "survives", differences, unexercised };
  }
  o.out(`differs: ${differences.length} of ${plan.length} runs; the first: ${differences[0]}`);
  return { verdict: "differs", differences, unexercised };
}

/** `--input FILE`: one packet per line, as text, or as hex after `hex:` (e.g. hex:0100000001000000). */
export function parseInputs(text: string): Uint8Array[] {
  const lines = text.split("\n").map((l) => l.replace(/\r$/, "")); // CRLF files too
  if (lines.at(-1) === "") lines.pop();
  return lines.map((line, i) => {
    if (line === "" || line === "hex:") throw new Error(`--input line ${i + 1}: an empty packet (a packet has 1..4096 bytes)`);
    if (!line.startsWith("hex:")) return new TextEncoder().encode(line);
    const h = line.slice(4).trim();
    if (!/^([0-9a-fA-F]{2})+$/.test(h)) throw new Error(`--input line ${i + 1}: hex: needs an even number of hex digits`);
    return Uint8Array.from(Buffer.from(h, "hex"));
  });
}
