/**
 * One simulated run: a guest under the real protocol, seeded faults, and
 * every invariant of docs/design.md checked — output commit, transparency,
 * fencing, atomicity, durability, liveness, and that what a reader is told
 * of the disk is never taken back.
 *
 *   simulate(seed) → { violations, trace, stats }
 *
 * A failing seed is a one-line reproduction: `npm run sim -- --seed N --trace`.
 */
import { KEEP_LIMIT_BYTES, Memory, PAGE_SIZE } from "../guest/memory.ts";
import { DEFAULT_KEMARI, type GuestConfig, type KemariOptions, type Latency, type Mode } from "../host/guest-config.ts";
import { linkSpec, regionRttMs } from "../protocol/link-model.ts";
import { REGIONS } from "../kemari/placement.ts";
import { assemble } from "../image/assembler.ts";
import type { Image } from "../image/image.ts";
import counter from "../../guests/counter.s";
import echo from "../../guests/echo.s";
import hello from "../../guests/hello.s";
import journal from "../../guests/journal.s";
import batch from "./batch.s";
import burst from "./burst.s";
import { watch } from "./checker.ts";
import { World } from "./world.ts";
import type { ClientStatus } from "./checker.ts";

export const SIM_GUESTS = { counter, echo, hello, journal, batch, burst } as const;
export type SimGuest = keyof typeof SIM_GUESTS;

export interface SimOptions {
  mode?: Exclude<Mode, "none">;
  guest?: SimGuest;
  /** Virtual ms of faults, then of calm in which the guest must recover (liveness). */
  faultMs?: number;
  calmMs?: number;
  /**
   * A scripted scenario instead of random faults (regression tests): it runs
   * during the fault phase on a calm network, and every invariant is checked
   * as in a random run.
   */
  script?: (s: Scenario) => Promise<void>;
  /** The guest's source instead of a named one (a scripted scenario's own guest). */
  source?: string;
  /** Mode kemari's tap (default: drawn by the seed). */
  kemari?: KemariOptions;
  /** The link model (default: drawn by the seed). */
  latency?: Latency;
  /** The client that reads the disk every 100 ms through the primary (default on; a scenario timing failure detection turns it off: its calls find a dead primary first). */
  reader?: boolean;
}

/** What a scripted scenario can do. */
export interface Scenario {
  world: World;
  /** Let `ms` of virtual time pass. */
  wait(ms: number): Promise<void>;
  /** Wait (up to `ms`) until `done` holds; false if it never did. */
  until(done: () => boolean, ms?: number): Promise<boolean>;
  /** Read the guest's status as a client would (null: the call failed); what it shows is checked. */
  status(): Promise<ClientStatus | null>;
}

export interface SimResult {
  seed: number;
  mode: Mode;
  guest: SimGuest;
  violations: string[];
  trace: string[];
  stats: { events: number; faults: number; takeovers: number; outputs: number; reads: number; virtualMs: number; settleMs: number };
}

const images = new Map<SimGuest, Image>();
function image(g: SimGuest): Image {
  let i = images.get(g);
  if (!i) {
    // Small: runs of a few rounds, so a seed costs milliseconds.
    const src = SIM_GUESTS[g].replace(/^\.equ ROUNDS, \d+/m, ".equ ROUNDS, 12");
    i = assemble(src);
    images.set(g, i);
  }
  return i;
}

const READ_SECTORS = 16;

function slowestRtt(latency: Latency): number {
  if (latency === "none") return 0;
  if (latency === "by-region") return Math.max(...REGIONS.flatMap((a) => REGIONS.map((b) => regionRttMs(a, b))));
  return latency.rttMs;
}

/** Half the seeds run without a link model; the rest between regions, some at a limited bandwidth (a full checkpoint then takes a while). */
function drawLatency(w: World): Latency {
  const r = w.rng.int(0, 3);
  if (r <= 1) return "none";
  if (r === 2) return "by-region";
  return { rttMs: w.rng.int(5, 200), mbps: w.rng.pick([1, 10, 100, 1000]) };
}
export const HEARTBEAT = { intervalMs: 100, timeoutMs: 400 };
/** Port calls a planned crash may pick. */
const PLANNED_CALLS = ["receive", "record", "secondaryReady", "replaceSecondary", "promote", "holds", "ping", "init", "retire", "primaryLost", "inbound", "readDisk"] as const;

export async function simulate(seed: number, opts: SimOptions = {}): Promise<SimResult> {
  const calm = !!opts.script;
  const w = new World(seed, calm
    ? { minDelayMs: 1, maxDelayMs: 15, dropCall: 0, dropReply: 0, crashAtCall: 0, slowCall: 0, slowMs: 0 }
    : { minDelayMs: 1, maxDelayMs: 15, dropCall: 0.01, dropReply: 0.01, crashAtCall: 0.002, slowCall: 0.02, slowMs: 1500 });
  const mode = opts.mode ?? w.rng.pick(["kemari", "remus"] as const);
  const guest = opts.guest ?? w.rng.pick(Object.keys(SIM_GUESTS) as SimGuest[]);
  const faultMs = opts.faultMs ?? 3000;
  const violations: string[] = [];
  const violate = (s: string) => {
    w.log(`VIOLATION ${s}`);
    if (violations.length < 20) violations.push(s);
  };
  /** settleMs: how long past its calm the run went for the primary to settle. */
  const stats = { events: 0, faults: 0, takeovers: 0, outputs: 0, reads: 0, virtualMs: 0, settleMs: 0 };
  // A scripted scenario runs with the defaults unless it says otherwise: its timings are its point.
  const kemari = opts.kemari ?? (calm ? DEFAULT_KEMARI : { syncOn: w.rng.chance(0.75) ? "outputs" : "every-event", pipeline: w.rng.chance(0.5) });
  const latency = opts.latency ?? (calm ? "none" : drawLatency(w));
  const rtt = linkSpec(latency, "weur", "enam")?.rttMs ?? 0;
  // The heartbeat timeout must cover 3 round trips (as the API insists), plus the seeded delays.
  const heartbeat = { ...HEARTBEAT, timeoutMs: Math.max(HEARTBEAT.timeoutMs, Math.ceil(3 * rtt) + 200) };
  // Recovery over slow links takes round trips: the calm that liveness allows grows with the slowest one.
  const calmMs = opts.calmMs ?? 6000 + 60 * slowestRtt(latency);
  const config: GuestConfig = {
    id: "g-5e5e5e5e5e5e", name: guest, mode, memoryPages: 32, diskSectors: 2048, createdAt: 0,
    regions: { primary: "weur", secondary: "enam" }, heartbeat, epochMs: 20, latency, kemari,
  };
  if (!calm && w.rng.chance(0.6)) w.plan = { call: w.rng.pick(PLANNED_CALLS), nth: w.rng.int(1, 40), after: w.rng.chance(0.5) };
  const tap = mode === "kemari" ? `, sync on ${kemari.syncOn}${kemari.pipeline ? ", pipelined" : ", stop-and-wait"}` : "";
  w.log(`seed ${seed}: ${guest} in mode ${mode}${tap}; latency ${JSON.stringify(latency)}${w.plan ? `; planned crash ${w.plan.after ? "after" : "before"} ${w.plan.call} #${w.plan.nth}` : ""}`);

  const checker = watch(w, config, violate, stats);

  // An exception that escapes the protocol's code is a finding too (and a dead incarnation that
  // touches storage is the simulator's own bug): either way the run reports it, with its trace.
  const uncaught = (e: unknown) => {
    // The guard that stops a dead incarnation's last continuation (as ctx.abort() would): not a finding.
    if (e instanceof Error && e.message.startsWith("a dead incarnation")) return;
    violate(`uncaught: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  };
  process.on("unhandledRejection", uncaught);

  // A quarter of the seeds hold the guest back after 1..3 kept pages (copy-on-write capture's
  // brake: src/guest/memory.ts), so back-pressure runs under faults too. Drawn from the seed,
  // not the random stream, so every other choice of a seed stays as it was.
  Memory.keepLimitBytes = seed % 4 === 1 ? PAGE_SIZE * (1 + ((seed >> 2) % 3)) : KEEP_LIMIT_BYTES;
  if (Memory.keepLimitBytes !== KEEP_LIMIT_BYTES) w.log(`copies kept for checkpoints in flight brake the guest at ${Memory.keepLimitBytes / PAGE_SIZE} pages`);

  // ---- The run ----
  const img = opts.source ? assemble(opts.source) : image(guest);
  // Creation is not what is under test (a create that fails is reported to its caller): it runs without faults.
  let created = false;
  w.faultsOn = false;
  void w.api((x) => x.create(config, img, false)).then(() => {
    created = true;
    w.faultsOn = true;
  }, (e: unknown) => w.log(`create failed: ${String(e)}`));

  // Clients: the counter's and the echo's, each request retried until answered.
  const clients = guest === "counter" ? 2 : guest === "echo" ? 1 : 0;
  const perClient = 5;
  let answered = 0;
  for (let c = 0; c < clients; c++) void client(c);
  async function client(c: number): Promise<void> {
    await wait(50 + c * 7);
    for (let seq = 1; seq <= perClient; seq++) {
      const packet = guest === "counter" ? u32s(c, seq) : u32s(c * 100 + seq);
      // Retries back off (300 ms, doubling to 4.8 s), as real clients do: over slow links a
      // flat retry rate can outrun the guest, and every retry is a packet it must serve.
      for (let backoff = 300; ; backoff = Math.min(backoff * 2, 4800)) {
        if (repliedTo(c, seq, packet)) break;
        w.log(`client ${c}: request ${seq}`);
        await w.api((x) => x.onPrimary((h) => h.inbound(packet), true)).catch((e: unknown) => w.log(`client ${c}: ${String(e)}`));
        for (let t = 0; t < backoff && !repliedTo(c, seq, packet); t += 100) await wait(100);
        if (repliedTo(c, seq, packet)) break;
      }
      answered++;
    }
  }
  function repliedTo(c: number, seq: number, packet: Uint8Array): boolean {
    for (const p of w.witnessDurable.packets.values()) {
      if (guest === "counter" && p.length >= 8 && u32(p, 0) === c && u32(p, 4) === seq) return true;
      if (guest === "echo" && equal(p, packet)) return true;
    }
    return false;
  }
  /**
   * The status the current primary gives a client now, read from it directly:
   * no call through the simulated network, so reading it draws nothing from
   * the seed's random stream (every seed runs as it did before the checker read it).
   */
  function readStatus(): Promise<ClientStatus | null> {
    const meta = w.witnessDurable.meta;
    const host = meta && !meta.lost ? w.hosts.get(meta.primary.name) : undefined;
    const role = host ? w.hostInstance(host).role : null;
    if (!host || role?.kind !== "primary") return Promise.resolve(null);
    const status = { ...w.hostInstance(host).status(), generation: role.generation };
    checker.onStatus(status);
    return Promise.resolve(status);
  }
  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => w.at(ms, resolve));
  }

  // A reader of the disk (the default, acknowledged view): the first sectors, where the guests write.
  if (opts.reader !== false) void (async () => {
    for (let t = 0; t < faultMs + calmMs; t += 100) {
      await wait(100);
      const data = await w.api((x) => x.onPrimary((h) => h.readDisk(1, READ_SECTORS))).catch(() => null);
      if (data) stats.reads++;
      // And its status, as a client polling for the end would.
      await readStatus();
    }
  })();

  const scenario: Scenario = {
    world: w,
    wait,
    async until(done, ms = 5000) {
      for (let t = 0; t < ms && !done(); t += 5) await wait(5);
      return done();
    },
    status: readStatus,
  };
  let scriptDone = !opts.script;
  if (opts.script) {
    const script = opts.script;
    void (async () => {
      await scenario.until(() => created);
      await script(scenario);
      scriptDone = true;
    })().catch((e: unknown) => violate(`scenario failed: ${String(e)}`));
  }
  // Faults: one host at a time (the next only once the guest is protected again), the witness, all hosts at once.
  else void (async () => {
    await wait(100);
    while (w.now < faultMs) {
      await wait(w.rng.int(50, 600));
      if (w.now >= faultMs) break;
      const meta = w.witnessDurable.meta;
      if (!meta || meta.lost) continue;
      if (meta.protection !== "protected") continue;
      const r = w.rng.next();
      stats.faults++;
      if (r < 0.3) w.crash(meta.primary.name, "(crash primary)");
      else if (r < 0.45 && meta.secondary) w.crash(meta.secondary.name, "(crash secondary)");
      else if (r < 0.6) w.crash("witness", "(crash witness)");
      else if (r < 0.7) w.restartAllHosts();
      else {
        const target = w.host(r < 0.85 || !meta.secondary ? meta.primary : meta.secondary);
        const fromWitnessOnly = w.rng.chance(0.5);
        w.log(`partition ${target.place.name}${fromWitnessOnly ? " from the witness" : ""}`);
        if (fromWitnessOnly) target.cutFromWitness = true;
        else target.cut = true;
        await wait(w.rng.int(100, 1500));
        w.log(`heal ${target.place.name}`);
        target.cut = false;
        target.cutFromWitness = false;
      }
    }
  })();

  await w.run(faultMs);
  w.faultsOn = false;
  for (const h of w.hosts.values()) {
    h.cut = false;
    h.cutFromWitness = false;
  }
  w.log("calm: no more faults");
  await w.run(faultMs + calmMs);
  // Liveness is judged at the end of the calm; the count of outputs only once nothing is in
  // motion. A slow every-event run may still be serving retried requests and releasing their
  // replies a round trip at a time: give it up to another calm to settle.
  const answeredInCalm = answered;
  for (let extra = 0; extra < calmMs && answered === clients * perClient && !checker.settled(); extra += 500) await w.run(w.now + 500);
  const settled = checker.settled();
  if (!settled) w.log("the primary has not settled: outputs are compared as a prefix only");
  stats.virtualMs = w.now;
  stats.settleMs = w.now - (faultMs + calmMs);
  stats.events = w.trace.length;

  process.off("unhandledRejection", uncaught);
  Memory.keepLimitBytes = KEEP_LIMIT_BYTES;

  // ---- The checks at the end ----
  if (!scriptDone) violate(`scenario did not finish in ${faultMs + calmMs} virtual ms`);
  if (!created && !w.witnessDurable.meta) violate("liveness: the guest was never created");
  await checker.atEnd(img, { calmMs, answered: answeredInCalm, requests: clients * perClient, settled });
  return { seed, mode, guest, violations, trace: w.trace, stats };
}

function u32s(...xs: number[]): Uint8Array {
  const b = new Uint8Array(xs.length * 4);
  const v = new DataView(b.buffer);
  xs.forEach((x, i) => v.setUint32(i * 4, x, true));
  return b;
}

function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(at, true);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

