/**
 * Kemari under failure: the design's invariants as tests. Each faulty run is
 * compared with the same guest's failure-free run: what the outside world saw
 * (console, packets, with repeats of an identity dropped by the switch), the
 * disk, and how the guest ended must be identical.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import journal from "../guests/journal.s?raw";
import hello from "../guests/hello.s?raw";
import stress from "../guests/stress.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import { call, createGuest, fault, observe, resume, status, waitFor, type FaultBody, type Observed } from "./helpers/api.ts";
import { tune } from "./helpers/guests.ts";

/** Both protected modes must pass every test here. */
type Mode = "kemari" | "remus";

/**
 * Every failure test runs for each way of protecting: Kemari with its tap
 * pipelined or stop-and-wait (v1.0), synchronising at outputs or at every
 * event, and over modelled links between regions; Remus alike.
 */
const VARIANTS: { name: string; mode: Mode; extra: Record<string, unknown> }[] = [
  { name: "kemari (pipelined, sync on outputs)", mode: "kemari", extra: {} },
  { name: "kemari v1.0 (stop-and-wait, every event)", mode: "kemari", extra: { kemari: { syncOn: "every-event", pipeline: false } } },
  { name: "kemari (stop-and-wait, sync on outputs)", mode: "kemari", extra: { kemari: { syncOn: "outputs", pipeline: false } } },
  { name: "kemari (pipelined, every event)", mode: "kemari", extra: { kemari: { syncOn: "every-event", pipeline: true } } },
  { name: "kemari over 30 ms links at 100 Mbps", mode: "kemari", extra: { latency: { rttMs: 30, mbps: 100 } } },
  { name: "remus", mode: "remus", extra: {} },
  { name: "remus over 30 ms links at 100 Mbps", mode: "remus", extra: { latency: { rttMs: 30, mbps: 100 } } },
];
/** Fast failure detection for tests: ping every 20 ms, fail over after 300 ms of silence. */
const HEARTBEAT = { heartbeat: { intervalMs: 20, timeoutMs: 300 } };
const STEPS = ["before-transfer", "mid-transfer", "after-ack", "after-release"] as const;
/** The guest has ended and everything it said is out (Remus holds outputs until their epoch commits). */
const DONE = (s: GuestStatus) => (s.state === "halted" || s.state === "crashed") && (s.sync?.heldOutputs ?? 0) === 0;

const GUESTS: Record<string, string> = {
  hello,
  journal,
  stress: tune(stress, { PAGES: 4, ROUNDS: 30, REGION: 16 }),
};

/** Run a guest to its end, with `faults` injected before it starts; return what was seen. */
async function runGuest(mode: Mode | "none", source: string, faults: FaultBody[] = [], extra: Record<string, unknown> = {}): Promise<{ seen: Observed; final: GuestStatus }> {
  const g = await createGuest({ asm: source }, { ...HEARTBEAT, mode, paused: true, ...extra });
  for (const f of faults) await fault(g.id, f);
  await resume(g.id);
  const final = await waitFor(g.id, (s) => DONE(s) && s.protection !== "failing-over", 20_000);
  return { seen: await observe(g.id), final };
}

/** Step a paused guest, and wait until a checkpoint carries what it did (at once in Kemari, at the epoch's end in Remus). */
async function step(id: string, instructions: number): Promise<void> {
  const res = await call("POST", `/api/guests/${id}/step`, { body: { instructions } });
  expect(res.status).toBe(200);
  // A step answers once the guest stopped; its checkpoint may still be on its way (pipelined).
  await waitFor(id, (s) => !s.sync?.epochOpen && (s.sync?.heldOutputs ?? 0) === 0 && !s.sync?.inFlight);
}

/** Wait for the guest to be protected again under `generation`. */
function reprotected(generation: number) {
  return (s: GuestStatus) => s.generation === generation && s.protection === "protected";
}

function host(name: string) {
  return env.HOST.get(env.HOST.idFromName(name));
}

/** A small deterministic PRNG, so a failing random case can be replayed from its seed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

describe.each(VARIANTS)("$name", ({ mode, extra }) => {
  const baseline: Record<string, Observed> = {};
  const run = (m: Mode | "none", source: string, faults: FaultBody[] = [], more: Record<string, unknown> = {}) => runGuest(m, source, faults, m === "none" ? more : { ...extra, ...more });
  const kemari = { syncOn: "outputs", pipeline: true, ...(extra.kemari ?? {}) } as { syncOn: string; pipeline: boolean };

  beforeAll(async () => {
    for (const [name, source] of Object.entries(GUESTS)) baseline[name] = (await run(mode, source)).seen;
  });

  describe("a protected guest", () => {
    it("synchronises and ends as it would unprotected", async () => {
      const { seen, final } = await run(mode, journal);
      expect(seen).toMatchObject({ state: "halted", exitCode: (40 * 41) / 2 });
      expect(seen.console).toBe("bcdefghijklmnopqrstuvwxyzabcdefghijklmno\nok\n");
      expect(final.protection).toBe("protected");
      expect(final.generation).toBe(0);
      // Kemari v1.0: 40 rounds × 3 events, plus the final print, plus the full checkpoint at start.
      // Sync on outputs: one per console event (40 + 1), plus the full one. Pipelined, checkpoints
      // that queue behind one in flight are coalesced. Remus: one per epoch, however many events.
      if (mode === "kemari" && !kemari.pipeline) expect(final.sync!.syncs).toBeGreaterThanOrEqual(kemari.syncOn === "every-event" ? 121 : 41);
      else expect(final.sync!.syncs).toBeGreaterThanOrEqual(2);
      const unprotected = await run("none", journal);
      expect(unprotected.seen).toEqual(seen);
    });
  });

  describe.each(Object.keys(GUESTS))("crash matrix: %s", (name) => {
    it.each(STEPS)("primary crash at %s: the secondary takes over, nothing lost or repeated", async (at) => {
      const { seen, final } = await run(mode, GUESTS[name], [{ target: "primary", kind: "crash", at }]);
      expect(seen).toEqual(baseline[name]);
      expect(final.generation).toBe(1);
      expect(final.failovers).toHaveLength(1);
    });

    it.each(STEPS)("secondary crash at %s: the primary goes on, the outcome is the same", async (at) => {
      const { seen, final } = await run(mode, GUESTS[name], [{ target: "secondary", kind: "crash", at }]);
      expect(seen).toEqual(baseline[name]);
      expect(final.generation).toBe(0);
    });
  });

  describe("crashes at random instruction counts", () => {
    // The fault API's own trigger (`at: {instruction: n}`, what `kemari check` uses): the guest runs on its own, not stepped.
    it.each(["primary", "secondary"] as const)("a %s crash armed at an instruction count changes nothing", async (target) => {
      const n = 1 + Math.floor(prng(target === "primary" ? 5 : 6)() * 3000);
      const { seen, final } = await run(mode, journal, [{ target, kind: "crash", at: { instruction: n } }]);
      expect(seen, `n = ${n}`).toEqual(baseline.journal);
      // The primary's crash is a failover; the secondary's, a re-protection under the same generation.
      expect(final.generation).toBe(target === "primary" ? 1 : 0);
      if (target === "primary") expect(final.failovers).toHaveLength(1);
    });

    it("a step stops at a crash armed for an instruction count, and the crash happens there", async () => {
      const g = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      await fault(g.id, { target: "primary", kind: "crash", at: { instruction: 50 } });
      // The host crashes at instruction 50, inside the step (the switch then asks the new primary to step).
      const res = await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 200 } });
      expect(res.status).toBe(200);
      const s = await waitFor(g.id, reprotected(1));
      expect(s.failovers).toHaveLength(1);
    });

    const seeds = [11, 2024, 77777];
    it.each(seeds)("seed %i: a primary crash after n instructions changes nothing", async (seed) => {
      const rand = prng(seed);
      const g = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      const n = 1 + Math.floor(rand() * 3000);
      await step(g.id, n);
      await fault(g.id, { target: "primary", kind: "crash" });
      await waitFor(g.id, reprotected(1));
      await resume(g.id);
      await waitFor(g.id, DONE, 20_000);
      expect(await observe(g.id), `seed ${seed}, n = ${n}`).toEqual(baseline.journal);
    });
  });

  describe("failover after failover", () => {
    it("survives three primary crashes in a row, re-protecting in a fresh region each time", async () => {
      const g = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      for (let gen = 1; gen <= 3; gen++) {
        // Run the guest on a little (through several syncs), then pull the plug on its primary.
        await step(g.id, 700);
        const before = await status(g.id);
        await fault(g.id, { target: "primary", kind: "crash" });
        const s = await waitFor(g.id, reprotected(gen));
        expect(s.hosts.primary.name).toBe(before.hosts.secondary!.name);
        expect(s.hosts.secondary!.region).not.toBe(s.hosts.primary.region);
        expect(s.hosts.secondary!.region).not.toBe(before.hosts.primary.region);
      }
      await resume(g.id);
      const final = await waitFor(g.id, DONE, 20_000);
      expect(await observe(g.id)).toEqual(baseline.journal);
      expect(final.failovers.map((f) => f.generation)).toEqual([1, 2, 3]);
      expect(final.failovers[1].from).toEqual(final.failovers[0].to);
      expect(final.failovers[2].from).toEqual(final.failovers[1].to);
      expect(new Set(final.failovers.map((f) => f.to.name)).size).toBe(3);
    });
  });

  describe("the secondary's copy", () => {
    it("survives the secondary's own restart between checkpoints (durability)", async () => {
      const g = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      await step(g.id, 1500);
      const secondary = (await status(g.id)).hosts.secondary!;
      const held = await host(secondary.name).replicaStatus();
      expect(held.seq).toBeGreaterThan(1);
      await fault(g.id, { target: "secondary", kind: "crash" });
      // The secondary restarts with nothing in RAM; its storage still holds the checkpoint.
      expect(await host(secondary.name).replicaStatus()).toEqual(held);
      await fault(g.id, { target: "primary", kind: "crash" });
      const s = await waitFor(g.id, reprotected(1));
      expect(s.hosts.primary.name).toBe(secondary.name);
      expect(s.instructions).toBe(held.instructions);
      await resume(g.id);
      await waitFor(g.id, DONE, 20_000);
      expect(await observe(g.id)).toEqual(baseline.journal);
    });

    it("refuses a corrupt or torn checkpoint and stays at the previous one", async () => {
      const { encodeFrame } = await import("../src/kemari/checkpoint.ts");
      const g = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      await step(g.id, 800);
      const secondary = host((await status(g.id)).hosts.secondary!.name);
      const held = await secondary.replicaStatus();
      const head = { seq: held.seq + 1, generation: 0, full: false, memoryPages: 256, diskSectors: 2048 };
      const machine = { regs: new Int32Array(32), pc: 0, instret: 0, pending: 0, state: "running" as const, exitCode: null, bindings: [] };
      const page = { space: 0 as const, index: 3, enc: 0 as const, data: new Uint8Array(4096).fill(0xee) };

      const corrupt = encodeFrame({ ...head, part: 0, machine, entries: [page] });
      corrupt[100] ^= 1;
      expect(await secondary.receive(corrupt)).toMatchObject({ ok: false, code: "corrupt" });
      const truncated = encodeFrame({ ...head, part: 0, machine, entries: [page] }).slice(0, 2000);
      expect(await secondary.receive(truncated)).toMatchObject({ ok: false, code: "corrupt" });
      // Torn: part 0 arrives, part 1 never does, and a "commit" claims to be part 2.
      expect(await secondary.receive(encodeFrame({ ...head, part: 0, machine: null, entries: [page] }))).toMatchObject({ ok: true, committed: false });
      expect(await secondary.receive(encodeFrame({ ...head, part: 2, machine, entries: [] }))).toMatchObject({ ok: false, code: "out-of-order" });
      expect(await secondary.replicaStatus()).toEqual(held);

      // The real primary recovers (it starts over with a full checkpoint) and the guest is unharmed.
      await resume(g.id);
      await waitFor(g.id, DONE, 20_000);
      expect(await observe(g.id)).toEqual(baseline.journal);
      // And the copy it kept is good enough to take over from.
      const g2 = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      await step(g2.id, 800);
      const sec2 = host((await status(g2.id)).hosts.secondary!.name);
      expect(await sec2.receive(corrupt)).toMatchObject({ ok: false });
      await fault(g2.id, { target: "primary", kind: "crash" });
      await waitFor(g2.id, reprotected(1));
      await resume(g2.id);
      await waitFor(g2.id, DONE, 20_000);
      expect(await observe(g2.id)).toEqual(baseline.journal);
    });
  });

  describe("fencing", () => {
    it("a partitioned primary is failed over after the timeout; healed, it is fenced and releases nothing", async () => {
      const g = await createGuest({ asm: journal }, { ...HEARTBEAT, mode, paused: true });
      await step(g.id, 1000);
      const old = (await status(g.id)).hosts.primary;
      await fault(g.id, { target: "primary", kind: "partition" });
      // Let it run: at its next event it cannot reach the secondary, and it must not release.
      await resume(g.id);
      const moved = await waitFor(g.id, reprotected(1));
      expect(moved.failovers[0].reason).toMatch(/silent/);
      expect(moved.hosts.primary.name).not.toBe(old.name);
      // The zombie comes back: its checkpoints are refused, the witness says it is superseded.
      await fault(g.id, { target: "primary", kind: "heal" });
      const zombie = host(old.name);
      const deadline = Date.now() + 5000;
      while ((await zombie.replicaStatus()).role !== "fenced") {
        if (Date.now() > deadline) throw new Error(`the old primary was never fenced: ${JSON.stringify(await zombie.replicaStatus())}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      // Fenced, it stays stopped: its guest never runs again there. (Under Kemari it stopped at
      // its first event; under Remus it may have run ahead speculatively, releasing nothing.)
      const frozen = await zombie.status();
      expect(frozen.ok).toBe(true);
      if (mode === "kemari") expect(frozen).toMatchObject({ value: { state: "paused" } });
      await new Promise((r) => setTimeout(r, 50));
      expect(await zombie.status()).toEqual(frozen);
      await waitFor(g.id, DONE, 20_000);
      expect(await observe(g.id)).toEqual(baseline.journal);
    });

    it("refuses outputs from a superseded generation at the switch", async () => {
      const g = await createGuest({ asm: hello }, { ...HEARTBEAT, mode });
      await waitFor(g.id, DONE);
      const sw = env.SWITCH.get(env.SWITCH.idFromName(g.id));
      const reply = await sw.record(7, [{ device: "console", index: 99, data: new TextEncoder().encode("zombie!") }]);
      expect(reply.ok).toBe(false);
      const s = await status(g.id);
      expect(s.fencedReleases).toBe(1);
      expect(await observe(g.id)).toEqual(baseline.hello);
    });
  });
});

describe("platform limits", () => {
  it("splits a checkpoint larger than one message may be into frames, applied whole", async () => {
    // Dirty all of a 16 MiB guest (4096 pages), then make one event: the checkpoint carries
    // ~16 MiB, more than the 8 MiB a frame may hold.
    const asm = `
      _start:
        li   t0, 0x10000          # from page 16 ...
        li   t1, 0x1000000        # ... to the end of memory
      1: sw   t0, 0(t0)
        li   t2, 0x1000
        add  t0, t0, t2
        blt  t0, t1, 1b
        li   a0, 0
        la   a1, ring
        li   a2, 1
        li   a7, 3
        ecall                     # CONNECT the console
        li   a0, 1
        li   a7, 1
        ecall                     # NOTIFY: the event that makes the big checkpoint
        li   a0, 0
        li   a7, 0
        ecall
      .data
      .align 12
      ring: .space 4096
    `;
    const g = await createGuest({ asm }, { ...HEARTBEAT, memoryPages: 4096 });
    const s = await waitFor(g.id, (x) => x.state === "halted" && (x.sync?.syncs ?? 0) >= 2, 30_000);
    expect(s.sync!.last!.pages).toBeGreaterThanOrEqual(4080);
    expect(s.sync!.last!.frames).toBeGreaterThanOrEqual(2);
    expect(s.sync!.last!.sentBytes).toBeGreaterThan(8 << 20); // more than one frame may carry
    // The secondary got it whole: take over and read memory back from the new primary.
    await fault(g.id, { target: "primary", kind: "crash" });
    // The last checkpoint was taken at the NOTIFY; the new primary runs on from there and halts again.
    const after = await waitFor(g.id, (x) => x.generation === 1 && x.state === "halted", 30_000);
    expect(after.exitCode).toBe(0);
    for (const page of [16, 2047, 4095]) {
      const res = await call("GET", `/api/guests/${g.id}/memory?addr=${page * 4096}&len=4`);
      expect(new Uint32Array(await res.arrayBuffer())[0]).toBe(page * 4096);
    }
  });
});
