/**
 * A host: one Durable Object in one region, playing a "physical machine" for
 * a guest. It owns the guest's memory (in RAM only, like a real host: a
 * restart loses it), a disk replica in SQLite, and drives the guest in bounded
 * slices from its alarm so that one busy guest never starves its requests.
 *
 * In mode kemari a host has a role, given by the guest's switch (the witness):
 * - primary: runs the guest; at each event it synchronises the secondary
 *   (src/kemari/replicator.ts) before the event reaches its backend, and
 *   mirrors disk writes to it;
 * - secondary: holds the last checkpoint (src/kemari/replica.ts) in RAM and in
 *   SQLite, and becomes primary when the witness promotes it;
 * - fenced: a primary the witness has replaced; it runs and releases nothing.
 *
 * Links between objects can be cut for teaching (`fault`): a partitioned host
 * neither answers nor reaches the other hosts and the switch. Its management
 * calls (status, faults) still work, as an out-of-band console would.
 */
import { DurableObject } from "cloudflare:workers";
import type { Output } from "../src/devices/backend.ts";
import type { Env } from "../src/env.ts";
import type { Image } from "../src/image/image.ts";
import { GuestError, outcome, type Outcome } from "../src/host/errors.ts";
import { SLICE_INSTRUCTIONS, isProtected, type GuestConfig } from "../src/host/guest-config.ts";
import { Epoch, EpochDisk } from "../src/remus/epoch.ts";
import { GuestRunner } from "../src/host/runner.ts";
import { lostHostStatus, type HostPlace, type HostStatus, type SyncSummary } from "../src/host/status.ts";
import type { FaultKind, FaultStep } from "../src/kemari/faults.ts";
import { MirroredDisk } from "../src/kemari/mirrored-disk.ts";
import { Replica } from "../src/kemari/replica.ts";
import { Fenced, Protection, type RecordReply, type SecondaryReply } from "../src/kemari/protection.ts";
import type { Replicator, SyncReply, SyncStats, SyncStep } from "../src/kemari/replicator.ts";
import { restoreMachine } from "../src/kemari/state.ts";
import { SqlDisk } from "./sql-disk.ts";
import { MAX_LISTED_PAGES, event, type StreamEvent } from "../src/events/messages.ts";
import { SqlReplicaStore } from "./replica-store.ts";

export type Role = "primary" | "secondary" | "fenced";

interface HostMeta {
  config: GuestConfig;
  /** Name of the guest's switch: where outputs go, and the witness. */
  switchName: string;
  /** This host's own name and region. */
  self: HostPlace;
  role: Role;
  generation: number;
}

export type PingReply = { ok: true; state: string } | { ok: false; code: "lost" | "not-primary" | "unreachable"; reason: string };

export class GuestHost extends DurableObject<Env> {
  private runner: GuestRunner | null = null;
  private meta: HostMeta | null = null;
  private pumping = false;
  private disk: SqlDisk | null = null;
  /** Primary: keeping a secondary, and releasing outputs through the witness (src/kemari/protection.ts). */
  private protection: Protection | null = null;
  private lastSync: SyncStats | null = null;
  private lastPauseMs = 0;
  private totalPauseMs = 0;
  /** Secondary: the copy, loaded from storage on first use after a restart. */
  private replica: Replica | null = null;
  private replicaStore: SqlReplicaStore;
  private partitioned = false;
  private armed: FaultStep | null = null;
  /** Events for the switch's live stream, sent in batches off the sync path. */
  private outbox: StreamEvent[] = [];
  /** Mode remus: what the current epoch holds back, and the timer that ends it. */
  private epoch = new Epoch();
  private epochTimer: ReturnType<typeof setTimeout> | null = null;
  private epochInstret = -1;
  private epochStarted = Date.now();
  private kick: ReturnType<typeof setTimeout> | null = null;
  private yields = 0;
  private flushing: ReturnType<typeof setTimeout> | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    const row = ctx.storage.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'host'").toArray()[0];
    this.meta = row ? (JSON.parse(row.v) as HostMeta) : null;
    this.replicaStore = new SqlReplicaStore(ctx.storage);
  }

  private save(meta: HostMeta): void {
    this.meta = meta;
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('host', ?)", JSON.stringify(meta));
  }

  // ---- Becoming a primary or a secondary ----

  /** Become the primary for a new guest: load the image, protect it (mode kemari), start it. */
  start(config: GuestConfig, image: Image, switchName: string, self: HostPlace, secondary: HostPlace | null, paused = false): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      if (this.meta) throw new GuestError("conflict", `host already serves guest ${this.meta.config.id}`);
      this.save({ config, switchName, self, role: "primary", generation: 0 });
      const runner = this.newRunner(config);
      runner.load(image);
      if (paused) runner.machine.pause();
      this.runner = runner;
      if (secondary) {
        const protection = this.protection!;
        protection.use(secondary);
        await runner.exclusive(() => protection.replicate(async () => {}));
      }
      await this.schedule();
      return this.snapshot();
    });
  }

  /** Become the secondary of a guest under `generation` (forgetting anything held before). */
  init(config: GuestConfig, switchName: string, self: HostPlace, generation: number): Promise<Outcome<void>> {
    return outcome(() => {
      if (this.partitioned) throw new GuestError("unavailable", "host is cut off");
      if (this.meta && this.meta.role === "primary" && this.runner) throw new GuestError("conflict", "host runs a guest");
      this.ctx.storage.sql.exec("DELETE FROM disk");
      this.replicaStore.clear();
      this.runner = null;
      this.replica = null;
      this.save({ config, switchName, self, role: "secondary", generation });
    });
  }

  private newRunner(config: GuestConfig, memory?: Uint8Array): GuestRunner {
    const protection = this.newProtection();
    this.protection = protection;
    const local = this.diskReplica(config);
    const mode = config.mode;
    const disk =
      mode === "kemari" ? new MirroredDisk(local, (s, d) => protection.mirror(s, d))
      : mode === "remus" ? new EpochDisk(local, () => this.epoch)
      : local;
    // Kemari releases outputs once the event that made them is synchronised; Remus holds them
    // until their epoch's checkpoint is acknowledged; mode none lets them straight out.
    const sink =
      mode === "remus"
        ? async (outputs: Output[]) => {
            this.epoch.hold(outputs);
            this.epochSoon();
          }
        : (outputs: Output[]) => protection.release(outputs);
    const runner = new GuestRunner(config.memoryPages, disk, sink, undefined, memory);
    if (mode === "kemari") {
      runner.tap = () => protection.replicate((r) => this.sync(r));
      runner.afterEvent = async () => this.at("after-release");
    }
    return runner;
  }

  /** This host's disk replica (one per object, whatever its role). */
  private diskReplica(config: GuestConfig): SqlDisk {
    this.disk ??= new SqlDisk(this.ctx.storage, config.diskSectors);
    return this.disk;
  }

  /** The protection loop, wired to this object's links (which a partition cuts) and its switch. */
  private newProtection(): Protection {
    const sw = this.switchStub();
    const meta = () => this.meta!;
    const host = {
      get generation(): number {
        return meta().generation;
      },
      isPrimary: () => this.meta?.role === "primary",
      fence: (reason: string) => void this.fence(reason),
      connect: (place: HostPlace) => {
        const stub = this.hostStub(place);
        return {
          send: (frame: Uint8Array) => this.net<SyncReply>(() => stub.receive(frame)),
          diskWrite: (g: number, sector: number, data: Uint8Array) => this.net<SyncReply>(() => stub.diskWrite(g, sector, data)),
        };
      },
      sync: (r: Replicator) => this.sync(r),
    };
    return new Protection(host, {
      replaceSecondary: (g, failed) => this.net<SecondaryReply>(() => sw.replaceSecondary(g, failed)),
      secondaryReady: (g, secondary) => this.net<void>(() => sw.secondaryReady(g, secondary)),
      record: (g, outputs) => this.net<RecordReply>(() => sw.record(g, outputs)),
    });
  }

  // ---- Remus: epochs ----

  /** End the current epoch in `epochMs` (if no end is already coming). */
  private epochSoon(): void {
    const meta = this.meta;
    if (this.epochTimer || meta?.role !== "primary" || meta.config.mode !== "remus") return;
    this.epochTimer = setTimeout(() => {
      this.epochTimer = null;
      void this.commitEpoch().catch((e: unknown) => console.error("epoch failed", e));
    }, meta.config.epochMs);
  }

  private epochIsOpen(): boolean {
    const m = this.runner?.machine;
    return !!m && (m.memory.dirtyPageCount > 0 || !this.epoch.empty || m.cpu.instret !== this.epochInstret);
  }

  /**
   * Checkpoint the epoch (memory, CPU, and its disk writes), and once the
   * secondary acknowledges it, release the outputs it held back. The guest
   * ran on speculatively all epoch; it is paused only for the checkpoint.
   */
  private async commitEpoch(): Promise<void> {
    const r = this.runner;
    if (!r || this.meta?.role !== "primary") return;
    const protection = this.protection!;
    await this.drive(() =>
      r.exclusive(() =>
        protection.replicate(async (rep) => {
          const m = r.machine;
          if (!this.epochIsOpen()) return;
          const epoch = this.epoch;
          await this.sync(rep, epoch.sectorEntries(), epoch.outputs);
          this.epoch = new Epoch();
          this.epochInstret = m.cpu.instret;
          this.epochStarted = Date.now();
          if (epoch.outputs.length > 0) await protection.release(epoch.outputs);
          this.at("after-release");
        }),
      ),
    );
    if (this.runner === r && (r.machine.runnable || !this.epoch.empty || r.memory.dirtyPageCount > 0)) this.epochSoon();
  }

  private switchStub() {
    return this.env.SWITCH.get(this.env.SWITCH.idFromName(this.meta!.switchName));
  }

  private hostStub(place: HostPlace) {
    const ns = this.env.HOST;
    const id = ns.idFromName(place.name);
    return place.region ? ns.get(id, { locationHint: place.region as DurableObjectLocationHint }) : ns.get(id);
  }

  // ---- The primary's side of Kemari ----

  /** One checkpoint of what changed, to the current secondary. */
  private async sync(r: Replicator, sectors?: [number, Uint8Array][], outputs?: Output[]): Promise<void> {
    const runner = this.runner!;
    const t0 = Date.now();
    const stats = await r.sync(runner.machine, {
      diskSectors: this.meta!.config.diskSectors,
      // A full checkpoint carries the whole disk; Remus's carry the epoch's writes.
      sectors: r.seq === 0 ? this.disk!.entries() : sectors,
      outputs,
      at: (step) => this.at(step),
      minFrames: this.armed === "mid-transfer" ? 2 : 1,
    });
    this.lastPauseMs = Date.now() - t0;
    this.totalPauseMs += this.lastPauseMs;
    this.lastSync = stats;
    this.outbox.push(
      event({
        type: "sync",
        generation: r.generation,
        seq: stats.seq,
        full: stats.full,
        pages: stats.pages,
        sent: stats.sentPages,
        bytes: stats.sentBytes,
        dirtyBytes: stats.dirtyBytes,
        deltaSaved: stats.deltaSaved,
        pauseMs: this.lastPauseMs,
      }),
    );
    this.changed();
  }

  private lastFlush = 0;

  /** The pump sends the stream its batch itself when one is due (timers can wait under load). */
  private flushDue(): boolean {
    if (this.outbox.length === 0 && !this.flushing) return false;
    if (Date.now() - this.lastFlush < 100) return false;
    if (this.flushing) clearTimeout(this.flushing);
    this.flushing = null;
    return true;
  }

  /** Something a dashboard would show has changed: send the stream a batch soon (at most 10 a second). */
  private changed(): void {
    if (this.flushing || this.meta?.role !== "primary") return;
    this.flushing = setTimeout(() => {
      this.flushing = null;
      void this.flush();
    }, 100);
  }

  private async flush(): Promise<void> {
    const r = this.runner;
    const meta = this.meta;
    if (!r || !meta || meta.role !== "primary") return;
    this.lastFlush = Date.now();
    const events = this.outbox.splice(0, 500);
    const dirty = r.memory.dirtyPages();
    events.push(
      event({
        type: "guest",
        generation: meta.generation,
        state: r.state,
        pc: r.machine.cpu.pc,
        instructions: r.machine.cpu.instret,
        devices: r.devices(),
        dirty: Array.from(dirty.subarray(0, MAX_LISTED_PAGES)),
      }),
    );
    // At most 500 events a batch; the rest go in the next one.
    if (this.outbox.length > 0) this.changed();
    await this.net<void>(() => this.switchStub().publish(meta.generation, events)).catch(() => undefined);
  }

  /** Stop for good: the guest lives elsewhere now. */
  private fence(reason: string): Fenced {
    if (this.meta && this.meta.role !== "fenced") this.save({ ...this.meta, role: "fenced" });
    this.runner?.machine.pause();
    if (this.protection) this.protection.replicator = null;
    return new Fenced(reason);
  }

  /** A call over the (possibly cut) network between objects. */
  private async net<T>(fn: () => PromiseLike<T>): Promise<T> {
    if (this.partitioned) throw new Error("link down: this host is partitioned");
    const v = await fn();
    if (this.partitioned) throw new Error("link down: this host is partitioned");
    return v;
  }

  // ---- The secondary's side ----

  private ensureReplica(): Replica {
    if (!this.replica) this.replica = new Replica(this.replicaStore, this.meta!.generation);
    return this.replica;
  }

  /** One frame of a checkpoint from the primary. */
  receive(frame: Uint8Array): SyncReply {
    if (this.partitioned) return { ok: false, code: "unreachable", reason: "host is cut off" };
    const meta = this.meta;
    if (!meta || meta.role !== "secondary") {
      return { ok: false, code: meta && meta.role === "primary" ? "superseded" : "not-secondary", reason: `this host is ${meta?.role ?? "unassigned"}` };
    }
    if (this.armed === "before-transfer") this.crash("before-transfer");
    const replica = this.ensureReplica();
    this.replicaStore.midway = this.armed === "mid-transfer" ? () => this.crash("mid-transfer") : null;
    const reply = replica.receive(frame);
    this.replicaStore.midway = null;
    if (reply.ok && reply.committed && (this.armed === "after-ack" || this.armed === "after-release")) {
      this.armed = null;
      setTimeout(() => this.ctx.abort("injected crash after ack"), 0);
    }
    return reply;
  }

  /** A disk write mirrored from the primary. */
  async diskWrite(generation: number, sector: number, data: Uint8Array): Promise<SyncReply> {
    if (this.partitioned) return { ok: false, code: "unreachable", reason: "host is cut off" };
    const meta = this.meta;
    if (!meta || meta.role !== "secondary" || generation !== meta.generation) {
      return { ok: false, code: "superseded", reason: `not the secondary of generation ${generation}` };
    }
    if (!this.ensureReplica().meta) return { ok: false, code: "out-of-order", reason: "no full checkpoint yet" };
    await this.diskReplica(meta.config).write(sector, data);
    return { ok: true, seq: this.replica!.seq, committed: true };
  }

  /**
   * Take over: restore the guest from the last checkpoint, let the backends
   * rebuild their cursors from the rings (processing outstanding requests
   * again), and run. Then find a new secondary and re-protect.
   */
  promote(generation: number, paused: boolean): Promise<Outcome<{ takeoverMs: number }>> {
    return outcome(async () => {
      const t0 = performance.now();
      const meta = this.meta;
      if (this.partitioned) throw new GuestError("unavailable", "host is cut off");
      if (!meta || meta.role !== "secondary") throw new GuestError("conflict", `this host is ${meta?.role ?? "unassigned"}, not a secondary`);
      const replica = this.ensureReplica();
      if (!replica.meta || !replica.memory) throw new GuestError("lost", "the secondary never received a full checkpoint");
      this.save({ ...meta, role: "primary", generation });
      // The replica's memory becomes the guest's (no copy of up to 64 MiB).
      const runner = this.newRunner(meta.config, replica.memory);
      restoreMachine(runner.machine, replica.meta.machine, replica.memory);
      // Paused or not is the operator's say (kept by the witness), not the checkpoint's.
      if (paused) runner.machine.pause();
      else runner.machine.resume();
      const held = replica.outputs;
      this.replica = null;
      this.runner = runner;
      // Remus: the last checkpoint's outputs were held back; its primary may have died before
      // releasing them. Release them now (the switch keeps each identity once).
      if (held.length > 0) await this.protection!.release(held);
      await runner.exclusive(() => runner.reattach());
      await this.schedule();
      const takeoverMs = performance.now() - t0;
      // Re-protection runs on while the guest does: its next event waits for it.
      const protection = this.protection!;
      void runner.exclusive(() => protection.replicate(async () => {})).catch(() => undefined);
      this.ctx.waitUntil(Promise.resolve().then(() => this.replicaStore.clear()));
      return { takeoverMs };
    });
  }

  /** The witness asks: are you alive, and still the primary of `generation`? */
  ping(generation: number): PingReply {
    if (this.partitioned) return { ok: false, code: "unreachable", reason: "host is cut off" };
    const meta = this.meta;
    if (!meta || meta.role !== "primary" || meta.generation !== generation) return { ok: false, code: "not-primary", reason: `this host is ${meta?.role ?? "unassigned"}` };
    if (!this.runner) return { ok: false, code: "lost", reason: LOST };
    return { ok: true, state: this.runner.state };
  }

  /** The witness has moved the guest away from this host (a call that a cut link stops). */
  retire(generation: number): boolean {
    if (this.partitioned) return false;
    if (this.meta && this.meta.role !== "fenced" && this.meta.generation < generation) {
      this.replica = null;
      this.fence(`generation ${generation} runs elsewhere`);
    }
    return true;
  }

  // ---- Fault injection ----

  fault(kind: FaultKind, at: FaultStep): Promise<Outcome<void>> {
    return outcome(() => {
      if (kind === "partition") this.partitioned = true;
      else if (kind === "heal") this.partitioned = false;
      else if (at === "now") setTimeout(() => this.ctx.abort("injected crash"), 0);
      else this.armed = at;
    });
  }

  /** A protocol step of a sync: crash here if a fault is armed for it. */
  private at(step: SyncStep | "after-release"): void {
    if (this.armed === step) this.crash(step);
  }

  private crash(step: string): never {
    this.armed = null;
    // Like a power cut: the object's memory is gone; only storage survives.
    this.ctx.abort(`injected crash at ${step}`);
    throw new Error("unreachable after abort");
  }

  // ---- Measurement hooks for `npm run bench` (no API route reaches them) ----

  /**
   * Time `syncs` synchronisations of a paused guest, each after dirtying
   * `pages` pages: rewriting them whole with random bytes, or changing one
   * word in each (where delta compression shines).
   */
  benchSync(syncs: number, pages: number, change: "rewrite" | "word"): Promise<{ ms: number; bytesSent: number; bytesDirtied: number; deltaSaved: number }> {
    const r = this.guest();
    return r.exclusive(async () => {
      const protection = this.protection!;
      await protection.replicate(async () => {});
      const rep = protection.replicator!;
      const mem = r.memory;
      const first = mem.pages - pages;
      const pool = Array.from({ length: 8 }, () => crypto.getRandomValues(new Uint8Array(4096)));
      const before = { ...rep.totals };
      const t0 = Date.now();
      for (let i = 0; i < syncs; i++) {
        for (let p = 0; p < pages; p++) {
          const addr = (first + p) * 4096;
          if (change === "rewrite") mem.write(addr, pool[(i + p) % pool.length]);
          else mem.writeU32(addr + ((i * 4) % 4096), i + 1);
        }
        await this.sync(rep);
      }
      const ms = Date.now() - t0;
      return {
        ms,
        bytesSent: rep.totals.sentBytes - before.sentBytes,
        bytesDirtied: rep.totals.dirtyBytes - before.dirtyBytes,
        deltaSaved: rep.totals.deltaSaved - before.deltaSaved,
      };
    });
  }

  /** The floor a sync is compared with: an RPC to the secondary carrying `bytes`, which it writes to storage. */
  async benchFloor(rounds: number, pages: number): Promise<{ ms: number; emptyMs: number }> {
    const stub = this.hostStub(this.protection!.secondary!);
    // Page data plus a small header, like a checkpoint frame (SQLite does not compress, so content does not matter).
    const payload = new Uint8Array(pages * 4096 + 64).map((_, i) => (i * 31) & 0xff);
    let t0 = Date.now();
    for (let i = 0; i < rounds; i++) await stub.benchNothing();
    const emptyMs = Date.now() - t0;
    t0 = Date.now();
    for (let i = 0; i < rounds; i++) await stub.benchWrite(payload, pages);
    return { ms: Date.now() - t0, emptyMs };
  }

  benchNothing(): number {
    return 0;
  }

  /** Write `pages` pages of `payload` as rows, in one transaction: the storage half of the floor. */
  benchWrite(payload: Uint8Array, pages: number): number {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS bench_pages (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    this.ctx.storage.transactionSync(() => {
      for (let p = 0; p < pages; p++) sql.exec("INSERT OR REPLACE INTO bench_pages (idx, data) VALUES (?, ?)", p, payload.subarray(p * 4096, (p + 1) * 4096));
    });
    return pages;
  }

  // ---- The guest, as the switch and the API see it ----

  /** The running guest, or an error that says why there is none. */
  private guest(): GuestRunner {
    if (this.runner && this.meta?.role === "primary") return this.runner;
    if (this.meta?.role === "primary") throw new GuestError("lost", LOST);
    if (this.meta?.role === "fenced") throw new GuestError("conflict", "this host was fenced: the guest runs elsewhere");
    throw new GuestError("not-found", "no guest on this host");
  }

  status(): Promise<Outcome<HostStatus>> {
    return outcome(() => this.snapshot());
  }

  /** Control changed the guest (pause, resume, step, a packet): let the stream know. */
  private touched<T>(v: T): T {
    this.changed();
    this.epochSoon();
    return v;
  }

  private snapshot(): HostStatus {
    if (!this.runner) {
      if (!this.meta) throw new GuestError("not-found", "no guest on this host");
      // The object restarted: its RAM, and with it the guest, is gone. In mode
      // kemari that is a failure for the witness to act on; in mode none it is the end.
      if (this.meta.role === "primary" && isProtected(this.meta.config.mode)) throw new GuestError("lost", LOST);
      if (this.meta.role !== "primary") throw new GuestError("conflict", `this host is ${this.meta.role}`);
      return lostHostStatus(LOST);
    }
    const r = this.runner;
    const m = r.machine;
    return {
      state: m.state,
      exitCode: m.exitCode,
      crash: m.crash,
      pc: m.cpu.pc,
      instructions: m.cpu.instret,
      pending: m.pending,
      dirtyPages: m.memory.dirtyPageCount,
      rxDropped: r.rxDropped,
      counters: { ...r.counters },
      devices: r.devices(),
      sync: this.syncSummary(),
    };
  }

  private syncSummary(): SyncSummary | null {
    const r = this.protection?.replicator;
    if (!this.meta || !isProtected(this.meta.config.mode)) return null;
    return {
      seq: r?.seq ?? 0,
      syncs: r?.totals.syncs ?? 0,
      pagesSent: r?.totals.pages ?? 0,
      bytesDirtied: r?.totals.dirtyBytes ?? 0,
      bytesSent: r?.totals.sentBytes ?? 0,
      deltaSaved: r?.totals.deltaSaved ?? 0,
      lastPauseMs: this.lastPauseMs,
      totalPauseMs: this.totalPauseMs,
      heldOutputs: this.epoch.outputs.length,
      epochOpen: this.meta.config.mode === "remus" && this.epochIsOpen(),
      last: this.lastSync ? { ...this.lastSync, sentPages: this.lastSync.sentPages.slice(0, 64) } : null,
    };
  }

  /** What a secondary holds, for tests and the dashboard. */
  replicaStatus(): { role: Role | null; generation: number; seq: number; pc: number | null; instructions: number | null; sectorsHeld: number } {
    const meta = this.meta;
    const rep = meta?.role === "secondary" ? this.ensureReplica() : null;
    const sectors = this.ctx.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM disk").one().n;
    return {
      role: meta?.role ?? null,
      generation: meta?.generation ?? 0,
      seq: rep?.seq ?? 0,
      pc: rep?.meta?.machine.pc ?? null,
      instructions: rep?.meta?.machine.instret ?? null,
      /** Sectors of the disk replica this host holds (written ones; the rest read as zeros). */
      sectorsHeld: sectors,
    };
  }

  pause(): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      const r = this.guest();
      await r.exclusive(async () => {
        if (!r.machine.pause() && r.state !== "paused") throw new GuestError("conflict", `cannot pause a guest that is ${r.state}`);
      });
      return this.touched(this.snapshot());
    });
  }

  resume(): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      const r = this.guest();
      if (!r.machine.resume() && r.state !== "running" && r.state !== "waiting") {
        throw new GuestError("conflict", `cannot resume a guest that is ${r.state}`);
      }
      await this.schedule();
      return this.touched(this.snapshot());
    });
  }

  step(instructions: number): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      const r = this.guest();
      if (r.state !== "paused" && r.state !== "breakpoint") {
        throw new GuestError("conflict", `only a paused guest can be stepped; this one is ${r.state}`);
      }
      await this.drive(() => r.step(instructions));
      return this.touched(this.snapshot());
    });
  }

  inbound(packet: Uint8Array): Promise<Outcome<void>> {
    return outcome(async () => {
      if (this.partitioned) throw new GuestError("unavailable", "the guest's host is cut off from the network");
      this.guest().deliverInbound(packet);
      await this.schedule();
    });
  }

  readMemory(addr: number, len: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => {
      const memory = this.guest().memory;
      if (!memory.contains(addr, len)) {
        throw new GuestError("bad-request", `addr + len (${addr} + ${len}) is beyond the guest's ${memory.size} bytes of memory`, "addr");
      }
      return memory.read(addr, len);
    });
  }

  readDisk(sector: number, count: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => {
      const disk = this.guest().disk;
      if (sector + count > disk.sectors) {
        throw new GuestError("bad-request", `sector + count (${sector} + ${count}) is beyond the disk's ${disk.sectors} sectors`, "sector");
      }
      return disk.read(sector, count);
    });
  }

  /** Forget the guest and everything stored for it. */
  async destroy(): Promise<void> {
    const r = this.runner;
    this.runner = null;
    this.meta = null;
    this.protection = null;
    this.replica = null;
    this.disk = null; // its table goes with deleteAll
    if (r) await r.exclusive(async () => r.machine.pause());
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
  }

  /** Make sure a runnable guest has an alarm coming to drive it. */
  private async schedule(): Promise<void> {
    if (!this.runner?.machine.runnable || this.pumping || this.meta?.role !== "primary") return;
    // Start at once (a woken guest answers a packet without waiting for an alarm to be
    // delivered); the alarm stays as the durable backstop should this object be evicted.
    if (!this.kick) {
      this.kick = setTimeout(() => {
        this.kick = null;
        void this.pump();
      }, 0);
    }
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + BACKSTOP_MS);
  }

  /** Run guest code; a fence stops it for good (it is not an error of the request). */
  private async drive(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof Fenced)) throw e;
    }
  }

  /**
   * The alarm is the durable backstop of the pump (and how a restarted
   * primary notices, at once, that it lost its guest): while this object is
   * alive the pump drives the guest itself.
   */
  override async alarm(): Promise<void> {
    const r = this.runner;
    if (!r) {
      // Restarted without its memory: tell the witness at once rather than wait for a heartbeat.
      if (this.meta?.role === "primary" && isProtected(this.meta.config.mode)) {
        await this.net<void>(() => this.switchStub().primaryLost(this.meta!.generation)).catch(() => undefined);
      }
      return;
    }
    void this.pump();
    if (r.machine.runnable && this.meta?.role === "primary") await this.ctx.storage.setAlarm(Date.now() + BACKSTOP_MS);
  }

  /**
   * Let queued requests in. Mostly not by setTimeout(0): workerd runs timers
   * only when its event loop is idle, so under load such a yield can wait a
   * long time (a guest polled hard ran 8× slower). A round trip to another
   * object is real I/O, and while this object awaits it its queued requests
   * are delivered; it carries nothing, so it is allowed even across a cut
   * link. But a loop never idle starves everyone's timers, so every few
   * slices the pump does wait for a timer, and lets the loop go idle.
   */
  private async yieldToRequests(): Promise<void> {
    if (!this.meta || ++this.yields % TIMER_YIELD_EVERY === 0) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      return;
    }
    await this.switchStub().tick().catch(() => undefined);
  }

  /**
   * Drive the guest in bounded slices, yielding to the event loop between
   * them so requests (status, pause, inbound packets, syncs) are served in
   * between: one busy guest never starves its object's requests.
   */
  private async pump(): Promise<void> {
    const r = this.runner;
    if (!r || this.pumping) return;
    this.pumping = true;
    try {
      while (r.machine.runnable && this.runner === r && this.meta?.role === "primary") {
        await this.drive(() => r.runSlice(SLICE_INSTRUCTIONS));
        this.changed();
        // Time is checked here, not only by timers: under load, timers can wait.
        if (this.meta?.config.mode === "remus" && Date.now() - this.epochStarted >= this.meta.config.epochMs) await this.commitEpoch();
        else this.epochSoon();
        if (this.flushDue()) void this.flush();
        await this.yieldToRequests();
      }
    } finally {
      this.pumping = false;
    }
  }
}

/** One yield in this many waits for a timer (see yieldToRequests). */
const TIMER_YIELD_EVERY = 8;

/** How long the alarm waits before it checks on the pump. */
const BACKSTOP_MS = 1000;

const LOST = "the host restarted and lost the guest's memory";

