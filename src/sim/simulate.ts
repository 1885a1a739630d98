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
import { DeviceKind } from "../guest/abi.ts";
import type { Output } from "../devices/backend.ts";
import type { GuestConfig, Mode } from "../host/guest-config.ts";
import { GuestRunner } from "../host/runner.ts";
import { assemble } from "../image/assembler.ts";
import type { Image } from "../image/image.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import counter from "../../guests/counter.s";
import echo from "../../guests/echo.s";
import hello from "../../guests/hello.s";
import journal from "../../guests/journal.s";
import batch from "./batch.s";
import { MemDisk } from "./stores.ts";
import { World, type SimHost } from "./world.ts";

export const SIM_GUESTS = { counter, echo, hello, journal, batch } as const;
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
}

/** What a scripted scenario can do. */
export interface Scenario {
  world: World;
  /** Let `ms` of virtual time pass. */
  wait(ms: number): Promise<void>;
  /** Wait (up to `ms`) until `done` holds; false if it never did. */
  until(done: () => boolean, ms?: number): Promise<boolean>;
}

export interface SimResult {
  seed: number;
  mode: Mode;
  guest: SimGuest;
  violations: string[];
  trace: string[];
  stats: { events: number; faults: number; takeovers: number; outputs: number; reads: number; virtualMs: number };
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
const HEARTBEAT = { intervalMs: 100, timeoutMs: 400 };
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
  const calmMs = opts.calmMs ?? 6000;
  const violations: string[] = [];
  const violate = (s: string) => {
    w.log(`VIOLATION ${s}`);
    if (violations.length < 20) violations.push(s);
  };
  const stats = { events: 0, faults: 0, takeovers: 0, outputs: 0, reads: 0, virtualMs: 0 };
  const config: GuestConfig = {
    id: "g-5e5e5e5e5e5e", name: guest, mode, memoryPages: 32, diskSectors: 2048, createdAt: 0,
    regions: { primary: "weur", secondary: "enam" }, heartbeat: HEARTBEAT, epochMs: 20,
  };
  if (!calm && w.rng.chance(0.6)) w.plan = { call: w.rng.pick(PLANNED_CALLS), nth: w.rng.int(1, 40), after: w.rng.chance(0.5) };
  w.log(`seed ${seed}: ${guest} in mode ${mode}${w.plan ? `; planned crash ${w.plan.after ? "after" : "before"} ${w.plan.call} #${w.plan.nth}` : ""}`);

  // ---- What the checker watches ----
  /** Per generation: the ring req_prod of console and net-tx in the newest acknowledged copy (or the copy its primary was promoted from). */
  const acked = new Map<number, Map<DeviceKind, number>>();
  /** Every state a primary captured under each (generation, seq): a retried checkpoint may differ from the first try. */
  const captured = new Map<string, Set<number>>();
  const ackedSeq = new Map<string, number>();
  const releaser = new Map<number, string>();
  const consumed = new Map<number, { g: number; packet: Uint8Array }>();

  /** Every value each sector has held in any acknowledged copy (a hash of its 512 bytes). */
  const ackedValues = new Map<number, Set<number>>();
  const zeroSector = hashBytes(new Uint8Array(512));
  /**
   * Commit-time checks on a copy: what it says of the disk is now acknowledged;
   * and every output its state has produced (a request the backend answered)
   * is either recorded outside already or held in the copy, to be released by
   * whoever takes over from it — else a takeover from it would lose that output.
   */
  const onCommit = (copy: NonNullable<SimHost["durable"]["copy"]>) => {
    for (const [sector, data] of copy.sectors) {
      const set = ackedValues.get(sector) ?? new Set<number>();
      set.add(hashBytes(data));
      ackedValues.set(sector, set);
    }
    for (const b of copy.meta.machine.bindings) {
      if (b.kind !== DeviceKind.CONSOLE && b.kind !== DeviceKind.NET_TX) continue;
      const page = copy.pages.get(b.ring / PAGE_SIZE);
      const rspProd = page ? new DataView(page.buffer, page.byteOffset).getUint32(8, true) : 0;
      const device = b.kind === DeviceKind.CONSOLE ? "console" : "net";
      const recorded = device === "console" ? w.witnessDurable.console : w.witnessDurable.packets;
      for (let i = 0; i < rspProd; i++) {
        if (recorded.has(i) || copy.outputs.some((o) => o.device === device && o.index === i)) continue;
        violate(`output commit: checkpoint ${copy.meta.generation}/${copy.meta.seq} holds the state after ${device}#${i} was produced, but neither the outside world nor the checkpoint holds that output`);
        break;
      }
    }
    noteCopy(copy, copy.meta.generation);
  };
  w.onDiskRead = (first, data, view) => {
    if (view !== "acked") return;
    for (let i = 0; i * 512 < data.length; i++) {
      const h = hashBytes(data.subarray(i * 512, (i + 1) * 512));
      if (h !== zeroSector && !ackedValues.get(first + i)?.has(h)) {
        violate(`disk reads: sector ${first + i} was shown as ${show(data.subarray(i * 512, (i + 1) * 512))}, which no acknowledged copy holds (a failover could take it back)`);
        return;
      }
    }
  };
  const noteCopy = (copy: NonNullable<SimHost["durable"]["copy"]>, generation: number) => {
    const m = acked.get(generation) ?? new Map<DeviceKind, number>();
    for (const b of copy.meta.machine.bindings) {
      if (b.kind !== DeviceKind.CONSOLE && b.kind !== DeviceKind.NET_TX) continue;
      const page = copy.pages.get(b.ring / PAGE_SIZE);
      const reqProd = page ? new DataView(page.buffer, page.byteOffset).getUint32(0, true) : 0;
      const prev = m.get(b.kind);
      if (prev === undefined || ((reqProd - prev) | 0) > 0) m.set(b.kind, reqProd);
    }
    acked.set(generation, m);
  };

  w.onRecord = (from, g, outputs, accepted) => {
    if (!accepted) return;
    const prev = releaser.get(g);
    if (prev && prev !== from) violate(`fencing: ${prev} and ${from} both released outputs under generation ${g}`);
    releaser.set(g, from);
    const current = w.witnessDurable.meta;
    if (current && current.generation !== g) violate(`fencing: an output of generation ${g} was accepted under ${current.generation}`);
    for (const o of outputs) {
      stats.outputs++;
      const kind = o.device === "console" ? DeviceKind.CONSOLE : DeviceKind.NET_TX;
      const reqProd = acked.get(g)?.get(kind);
      const ahead = reqProd === undefined ? 0 : (reqProd - o.index) >>> 0;
      if (ahead === 0 || ahead >= 2 ** 31) violate(`output commit: ${o.device}#${o.index} released under generation ${g} before any acknowledged copy held the state that produced it (acked req_prod ${reqProd ?? "none"})`);
    }
  };
  w.onReceived = (g, index, packet) => {
    const prev = consumed.get(index);
    if (!prev || prev.g <= g) consumed.set(index, { g, packet: packet.slice() });
  };

  // Atomicity and durability, checked on the copy a host is promoted from.
  const checkCopy = (h: SimHost, generation: number) => {
    const copy = h.durable.copy;
    if (!copy) return;
    const key = `${copy.meta.generation}/${copy.meta.seq}`;
    const want = captured.get(key);
    const got = hashCopy(copy.pages, config.memoryPages, copy.meta.machine.pc, copy.meta.machine.instret);
    if (want !== undefined && !want.has(got)) violate(`atomicity: ${h.place.name}'s copy of checkpoint ${key} is not what its primary captured`);
    const seen = ackedSeq.get(`${h.place.name}/${copy.meta.generation}`) ?? 0;
    if (copy.meta.seq < seen) violate(`durability: ${h.place.name} acknowledged checkpoint ${seen} of generation ${copy.meta.generation} but holds ${copy.meta.seq}`);
    noteCopy(copy, generation);
    stats.takeovers++;
  };
  w.onNewHost = (h) => (h.durable.onCommit = onCommit);
  w.beforePromote = checkCopy;
  w.onCapture = (host, generation, seq) => {
    if (host.role.kind !== "primary") return;
    const m = host.role.primary.machine;
    const key = `${generation}/${seq}`;
    const set = captured.get(key) ?? new Set<number>();
    set.add(hashMemory(m.memory.bytes, m.cpu.pc, m.cpu.instret));
    captured.set(key, set);
  };
  w.onSynced = (secondary, generation, seq) => {
    const key = `${secondary}/${generation}`;
    ackedSeq.set(key, Math.max(ackedSeq.get(key) ?? 0, seq));
  };

  // An exception that escapes the protocol's code is a finding too (and a dead incarnation that
  // touches storage is the simulator's own bug): either way the run reports it, with its trace.
  const uncaught = (e: unknown) => {
    // The guard that stops a dead incarnation's last continuation (as ctx.abort() would): not a finding.
    if (e instanceof Error && e.message.startsWith("a dead incarnation")) return;
    violate(`uncaught: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  };
  process.on("unhandledRejection", uncaught);

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
      for (;;) {
        if (repliedTo(c, seq, packet)) break;
        w.log(`client ${c}: request ${seq}`);
        await w.api((x) => x.onPrimary((h) => h.inbound(packet))).catch((e: unknown) => w.log(`client ${c}: ${String(e)}`));
        await wait(300);
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
  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => w.at(ms, resolve));
  }

  // A reader of the disk (the default, acknowledged view): the first sectors, where the guests write.
  void (async () => {
    for (let t = 0; t < faultMs + calmMs; t += 100) {
      await wait(100);
      const data = await w.api((x) => x.onPrimary((h) => h.readDisk(1, READ_SECTORS))).catch(() => null);
      if (data) stats.reads++;
    }
  })();

  const scenario: Scenario = {
    world: w,
    wait,
    async until(done, ms = 5000) {
      for (let t = 0; t < ms && !done(); t += 5) await wait(5);
      return done();
    },
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
  stats.virtualMs = w.now;
  stats.events = w.trace.length;

  process.off("unhandledRejection", uncaught);

  // ---- The checks at the end ----
  if (!scriptDone) violate(`scenario did not finish in ${faultMs + calmMs} virtual ms`);
  const meta = w.witnessDurable.meta;
  if (!created && !meta) violate("liveness: the guest was never created");
  if (meta?.lost) {
    const holder = [...w.hosts.values()].find((h) => h.durable.copy !== null);
    if (holder) violate(`liveness: declared lost (${meta.lost}) while ${holder.place.name} holds a whole acknowledged copy`);
  } else if (meta) {
    const primary = w.hosts.get(meta.primary.name)!;
    const host = w.hostInstance(primary);
    const role = host.role;
    if (role.kind !== "primary") violate(`liveness: ${calmMs} ms after the last fault the primary ${meta.primary.name} is ${role.kind}`);
    else {
      const state = role.primary.machine.state;
      const done = state === "halted" || state === "crashed";
      if (!done && meta.protection !== "protected") violate(`liveness: ${calmMs} ms after the last fault the guest is ${meta.protection}, not protected`);
      if (answered < clients * perClient) violate(`liveness: ${answered} of ${clients * perClient} requests answered ${calmMs} ms after the last fault`);
      await checkTransparency(role.primary.runner, role.primary.readDisk.bind(role.primary));
    }
  }

  async function checkTransparency(live: GuestRunner, readDisk: (s: number, n: number, view: "acked" | "live") => Uint8Array): Promise<void> {
    const rx = live.machine.bindingOf(DeviceKind.NET_RX);
    const rxRing = rx ? new DataView(live.memory.bytes.buffer, rx.ring) : null;
    const taken = rxRing ? rxRing.getUint32(8, true) : 0;
    const inputs: Uint8Array[] = [];
    for (let i = 0; i < taken; i++) {
      const c = consumed.get(i);
      if (!c) return violate(`transparency: the guest consumed net-rx buffer ${i}, but no packet was ever put there`);
      inputs.push(c.packet);
    }
    // As far as the live guest got, and then some: a guest that never stops (one that computes forever) is compared up to there.
    const ref = await reference(img, config, inputs, live.machine.cpu.instret * 2 + 10_000_000);
    const compare = (device: "console" | "net", got: Map<number, Uint8Array>) => {
      const want = ref.outputs.filter((o) => o.device === device);
      const indices = [...got.keys()].sort((a, b) => a - b);
      indices.forEach((idx, i) => {
        if (idx !== i) violate(`transparency: ${device} outputs have a gap before #${idx}`);
      });
      for (const idx of indices) {
        const o = want.find((x) => x.index === idx);
        if (!o) violate(`transparency: ${device}#${idx} was seen outside, but a failure-free run fed the same inputs never produced it`);
        else if (!equal(o.data, got.get(idx)!)) violate(`transparency: ${device}#${idx} differs from the failure-free run (${show(got.get(idx)!)} vs ${show(o.data)})`);
      }
      const quiet = live.machine.state === "halted" || live.machine.state === "crashed" || (live.machine.state === "waiting" && answered === clients * perClient);
      if (quiet && indices.length !== want.length) violate(`transparency: ${indices.length} ${device} outputs seen outside, the failure-free run made ${want.length}`);
    };
    compare("console", w.witnessDurable.console);
    compare("net", w.witnessDurable.packets);
    const sectors = new Set([...ref.disk.data.keys()]);
    for (const s of sectors) {
      if (!equal(readDisk(s, 1, "acked"), ref.disk.read(s, 1))) violate(`transparency: disk sector ${s} differs from the failure-free run`);
    }
  }

  return { seed, mode, guest, violations, trace: w.trace, stats };
}

/** The failure-free run: the same image fed the inputs the guest actually consumed, one at a time. */
async function reference(img: Image, config: GuestConfig, inputs: Uint8Array[], maxInstructions: number) {
  const disk = new MemDisk(config.diskSectors);
  const outputs: Output[] = [];
  const runner = new GuestRunner(config.memoryPages, disk, async (o) => void outputs.push(...o));
  runner.load(img);
  let next = 0;
  while (runner.machine.cpu.instret < maxInstructions) {
    await runner.runSlice(1_000_000);
    if (runner.machine.runnable) continue;
    if (runner.machine.state !== "waiting" || next >= inputs.length) break;
    runner.deliverInbound(inputs[next++]);
  }
  return { outputs, disk };
}

function hashMemory(bytes: Uint8Array, pc: number, instret: number): number {
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  let h = 0x811c9dc5 ^ pc ^ instret;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return h >>> 0;
}

function hashBytes(b: Uint8Array): number {
  return hashMemory(b, 0, 0);
}

function hashCopy(pages: Map<number, Uint8Array>, memoryPages: number, pc: number, instret: number): number {
  const bytes = new Uint8Array(memoryPages * PAGE_SIZE);
  for (const [p, data] of pages) bytes.set(data, p * PAGE_SIZE);
  return hashMemory(bytes, pc, instret);
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

function show(b: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(b.subarray(0, 16)).replace(/\0+$/, ""));
}
