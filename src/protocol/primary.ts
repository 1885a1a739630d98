/**
 * A primary: the running guest and what protects it.
 *
 * - Kemari: the event tap. At each NOTIFY the runner calls `tap`, which sends
 *   the secondary a checkpoint of everything that changed (dirty pages, CPU,
 *   event channels, the disk writes since the last one) and returns only when
 *   the secondary holds it; then the event reaches its backend, and the
 *   backend's outputs are released through the witness.
 * - Remus: the epoch loop. The guest runs on speculatively; outputs are held
 *   (and travel inside every checkpoint, so a secondary that takes over can
 *   release them); at the end of each epoch one checkpoint carries it all and,
 *   once acknowledged, the held outputs leave.
 * - none: outputs go straight out.
 *
 * In every protected mode disk writes are replicated state
 * (src/protocol/replicated-disk.ts), never sent ahead of their checkpoint.
 */
import type { Output } from "../devices/backend.ts";
import { isProtected, type GuestConfig } from "../host/guest-config.ts";
import { GuestRunner } from "../host/runner.ts";
import { defaultEnv } from "../guest/machine.ts";
import type { SyncSummary, HostPlace } from "../host/status.ts";
import { DEFAULT_PROTECTION, Fenced, Protection, type ProtectionHost } from "../kemari/protection.ts";
import type { Replicator, SyncStats } from "../kemari/replicator.ts";
import { Epoch } from "../remus/epoch.ts";
import { mutations } from "./mutations.ts";
import type { DiskStore, HostIO } from "./ports.ts";
import { ReplicatedDisk } from "./replicated-disk.ts";

export class Primary {
  readonly runner: GuestRunner;
  readonly protection: Protection | null;
  readonly disk: ReplicatedDisk | DiskStore;
  /** Remus: what the open epoch holds back. */
  private epoch = new Epoch();
  private epochInstret = -1;
  private epochStarted: number;
  private epochTimer = false;
  private lastSync: SyncStats | null = null;
  private lastPauseMs = 0;
  private totalPauseMs = 0;
  private lastCheckIn: number;

  constructor(
    private readonly io: HostIO,
    readonly config: GuestConfig,
    readonly generation: number,
    local: DiskStore,
    host: Omit<ProtectionHost, "sync" | "generation">,
    memory?: Uint8Array,
  ) {
    this.epochStarted = io.clock.now();
    this.lastCheckIn = io.clock.now();
    const mode = config.mode;
    const disk = isProtected(mode) ? new ReplicatedDisk(local) : local;
    this.disk = disk;
    // TIME reads the port's clock (virtual under the simulator); RANDOM stays the platform's.
    const env = { now: () => io.clock.now(), random32: defaultEnv.random32 };
    const sink = (outputs: Output[]) => this.sink(outputs);
    this.runner = new GuestRunner(config.memoryPages, disk, sink, env, memory);
    if (io.observer?.received) this.runner.received = (i, p) => io.observer?.received?.(generation, i, p);
    if (!isProtected(mode)) {
      this.protection = null;
      return;
    }
    this.protection = new Protection({ ...host, generation, sync: (r) => this.sync(r) }, io.witness, { ...DEFAULT_PROTECTION, sleep: (ms) => io.clock.sleep(ms) });
    const protection = this.protection;
    if (disk instanceof ReplicatedDisk) disk.mirror = (sector, data) => protection.mirror(sector, data);
    if (mode === "kemari") {
      const tap = () => protection.replicate((r) => this.sync(r));
      if (mutations.releaseBeforeAck) {
        // The bug: the event reaches its backend (and its outputs leave) first.
        this.runner.afterEvent = async () => {
          await tap();
          await io.faults.at("after-release");
        };
      } else {
        this.runner.tap = tap;
        this.runner.afterEvent = async () => io.faults.at("after-release");
      }
    }
  }

  get machine() {
    return this.runner.machine;
  }

  get secondary(): HostPlace | null {
    return this.protection?.secondary ?? null;
  }

  /** Where the guest's outputs go: straight out (none, kemari) or held for the epoch (remus). */
  private async sink(outputs: Output[]): Promise<void> {
    if (this.config.mode !== "remus" || mutations.releaseBeforeAck) return this.release(outputs);
    this.epoch.hold(outputs);
    this.epochSoon();
  }

  /** Outputs to the witness (which refuses a superseded generation: then this primary is fenced). */
  async release(outputs: Output[]): Promise<void> {
    if (outputs.length === 0) return;
    if (this.protection) await this.protection.release(outputs);
    else await this.releaseUnprotected(outputs);
  }

  private async releaseUnprotected(outputs: Output[]): Promise<void> {
    for (;;) {
      try {
        const reply = await this.io.witness.record(this.generation, outputs);
        if (!reply.ok) throw new Fenced(reply.reason);
        return;
      } catch (e) {
        if (e instanceof Fenced) throw e;
        await this.io.clock.sleep(100);
      }
    }
  }

  /**
   * One checkpoint of what changed, to the current secondary (a full one when
   * the replicator is new). It carries the disk writes since the last one and,
   * in mode remus, the outputs the epoch holds back — in a full checkpoint too,
   * so a new secondary that takes over can still release them.
   */
  async sync(r: Replicator): Promise<void> {
    const runner = this.runner;
    const t0 = this.io.clock.now();
    const full = r.needsFull;
    const disk = this.disk as ReplicatedDisk;
    const carryHeld = this.config.mode === "remus" && !(full && mutations.fullWithoutHeldOutputs);
    const stats = await r.sync(runner.machine, {
      diskSectors: this.config.diskSectors,
      // A full checkpoint carries the whole disk; an incremental one the writes since the last.
      sectors: full ? disk.entries() : disk.pending(),
      outputs: carryHeld ? this.epoch.outputs : undefined,
      at: (step) => this.io.faults.at(step),
      minFrames: this.io.faults.minFrames(),
    });
    disk.acknowledged();
    this.lastPauseMs = this.io.clock.now() - t0;
    this.totalPauseMs += this.lastPauseMs;
    this.lastSync = stats;
    this.io.observer?.synced?.(r.generation, stats, this.lastPauseMs);
    this.io.observer?.changed?.();
  }

  // ---- Remus: epochs ----

  /** End the current epoch in `epochMs` (if no end is already coming). */
  epochSoon(): void {
    if (this.epochTimer || this.config.mode !== "remus") return;
    this.epochTimer = true;
    void this.io.clock.sleep(this.config.epochMs).then(() => {
      this.epochTimer = false;
      return this.commitEpoch();
    }).catch((e: unknown) => {
      if (!(e instanceof Fenced)) throw e;
    });
  }

  /** The pump checks the time itself too: under load, timers can wait. */
  epochDue(): boolean {
    return this.config.mode === "remus" && this.io.clock.now() - this.epochStarted >= this.config.epochMs;
  }

  epochIsOpen(): boolean {
    const m = this.machine;
    return m.memory.dirtyPageCount > 0 || !this.epoch.empty || (this.disk as ReplicatedDisk).pendingCount > 0 || m.cpu.instret !== this.epochInstret;
  }

  /**
   * Checkpoint the epoch (memory, CPU, its disk writes and held outputs), and
   * once the secondary acknowledges it, release the outputs it held back.
   */
  async commitEpoch(): Promise<void> {
    const protection = this.protection!;
    const runner = this.runner;
    await runner.exclusive(() =>
      protection.replicate(async (rep) => {
        if (!this.epochIsOpen()) return;
        const epoch = this.epoch;
        await this.sync(rep);
        this.epoch = new Epoch();
        this.epochInstret = runner.machine.cpu.instret;
        this.epochStarted = this.io.clock.now();
        if (epoch.outputs.length > 0) await this.release(epoch.outputs);
        await this.io.faults.at("after-release");
      }),
    );
    if (runner.machine.runnable || !this.epoch.empty || this.machine.memory.dirtyPageCount > 0) this.epochSoon();
  }

  get heldOutputs(): number {
    return this.epoch.outputs.length;
  }

  // ---- Fencing without events ----

  /**
   * A primary that runs without events would never hear that the witness
   * moved the guest away (partition → failover → heal): so once a heartbeat
   * interval it asks, and learns why it must stop (null: go on). An unreachable
   * witness is no answer: outputs still need it, so nothing leaks meanwhile.
   */
  async checkInDue(): Promise<string | null> {
    if (!this.protection) return null;
    const now = this.io.clock.now();
    if (now - this.lastCheckIn < this.config.heartbeat.intervalMs) return null;
    this.lastCheckIn = now;
    const reply = await this.io.witness.checkIn(this.generation).catch(() => null);
    return reply && !reply.ok ? reply.reason : null;
  }

  syncSummary(): SyncSummary | null {
    if (!this.protection) return null;
    const r = this.protection.replicator;
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
      epochOpen: this.config.mode === "remus" && this.epochIsOpen(),
      last: this.lastSync ? { ...this.lastSync, sentPages: this.lastSync.sentPages.slice(0, 64) } : null,
    };
  }

  /** The disk as a reader outside is told it: acknowledged unless the live view is asked for. */
  readDisk(sector: number, count: number, view: "acked" | "live"): Uint8Array {
    const d = this.disk;
    return view === "acked" && d instanceof ReplicatedDisk ? d.readAcked(sector, count) : d.read(sector, count);
  }
}
