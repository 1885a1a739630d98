/**
 * A primary: the running guest and what protects it.
 *
 * - Kemari: the event tap (event-tap.ts). At a NOTIFY that needs one, a
 *   checkpoint of everything that changed (dirty pages, CPU, event channels,
 *   the disk writes since the last one) goes to the secondary; the event
 *   reaches its backend once the secondary holds it — the guest stopped
 *   meanwhile (stop-and-wait) or running on (pipelined).
 * - Remus: the epoch loop. The guest runs on speculatively; outputs are held
 *   (and travel inside every checkpoint, so a secondary that takes over can
 *   release them); at the end of each epoch its checkpoint is taken, the
 *   guest resumes at once, and the checkpoint is sent in the background; once
 *   acknowledged, the epoch's outputs leave. Several epochs may be in flight,
 *   enough to cover a round trip (`epochWindow`); they land in order; a full
 *   window holds the open epoch back until one lands (back-pressure).
 * - none: outputs go straight out.
 *
 * In every mode outputs go to the witness through the output queue
 * (output-queue.ts), in order and without stopping the guest; until the
 * witness has them they ride in every checkpoint.
 *
 * In every protected mode disk writes are replicated state
 * (src/protocol/replicated-disk.ts), never sent ahead of their checkpoint.
 */
import type { Output } from "../devices/backend.ts";
import { isProtected, type GuestConfig } from "../host/guest-config.ts";
import { GuestRunner } from "../host/runner.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import { defaultEnv } from "../guest/machine.ts";
import type { InFlight, SyncSummary, HostPlace } from "../host/status.ts";
import { DEFAULT_PROTECTION, Fenced, Protection, type ProtectionHost } from "../kemari/protection.ts";
import { windowBytesFor, InvariantError, type Replicator, type SyncStats } from "../kemari/replicator.ts";
import { Epoch } from "../remus/epoch.ts";
import { EventTap, type Flight } from "./event-tap.ts";
import { linkSpec } from "./link-model.ts";
import { mutations } from "./mutations.ts";
import { OutputQueue } from "./output-queue.ts";
import type { DiskStore, HostIO } from "./ports.ts";
import { ReplicatedDisk } from "./replicated-disk.ts";
import { checkInEveryMs } from "./liveness.ts";

/** Remus: an epoch whose checkpoint is on its way (seq 0: going stop-and-wait), and the outputs it releases. */
type EpochFlight = Flight & { outputs: Output[] };

/** Remus: at most this many bytes of captured epochs held in RAM while they cross. */
const MAX_EPOCH_BYTES_IN_FLIGHT = 16 << 20;
/** Remus: never more epochs in flight than this, however long the round trip. */
const MAX_EPOCH_WINDOW = 16;

/** Enough epochs in flight to cover a round trip to the secondary (at least 2: sending overlaps the next epoch even at 0 ms). */
export function epochWindow(config: GuestConfig): number {
  const rtt = linkSpec(config.latency, config.regions.primary, config.regions.secondary)?.rttMs ?? 0;
  return Math.min(MAX_EPOCH_WINDOW, Math.max(2, Math.ceil(rtt / config.epochMs) + 1));
}

export class Primary {
  readonly runner: GuestRunner;
  readonly protection: Protection | null;
  readonly disk: ReplicatedDisk | DiskStore;
  /** Outputs on their way to the witness. */
  readonly outputs: OutputQueue;
  /** Mode kemari: the event tap. */
  readonly eventTap: EventTap | null = null;
  /** Remus: what the open epoch holds back. */
  private epoch = new Epoch();
  /** Remus: the epochs whose checkpoints are in flight, oldest first, each with the outputs it will release. */
  private epochFlights: EpochFlight[] = [];
  /** Remus: the landings of the epochs in flight, chained so their outputs leave in epoch order. */
  private landings: Promise<void> = Promise.resolve();
  /** Remus: how many epochs may be in flight at once (enough to cover a round trip to the secondary). */
  private readonly epochWindow: number;
  private epochInstret = -1;
  /** Remus's epochs end on a fixed cadence (every epochMs since the primary started), as its checkpoint timer does. */
  private readonly cadenceStart: number;
  /** When the open epoch first had something to checkpoint (null: nothing yet). */
  private openedAt: number | null = null;
  /** The timer that ends the open epoch at its boundary, if one is set (cancelled when the pump ends the epoch first). */
  private epochTimer: AbortController | null = null;
  private lastSync: SyncStats | null = null;
  private lastPauseMs = 0;
  private lastFlightMs = 0;
  private totalPauseMs = 0;
  private lastCheckIn: number;
  /** A check-in is on its way to the witness: the next waits for its reply. */
  private checkingIn = false;

  constructor(
    private readonly io: HostIO,
    readonly config: GuestConfig,
    readonly generation: number,
    local: DiskStore,
    private readonly host: Omit<ProtectionHost, "sync" | "generation"> & { wake?: () => void },
    memory?: Uint8Array,
  ) {
    this.cadenceStart = io.clock.now();
    this.epochWindow = epochWindow(config);
    this.lastCheckIn = io.clock.now();
    const mode = config.mode;
    const disk = isProtected(mode) ? new ReplicatedDisk(local) : local;
    this.disk = disk;
    // TIME reads the port's clock (virtual under the simulator); RANDOM stays the platform's.
    const env = { now: () => io.clock.now(), random32: defaultEnv.random32 };
    const sink = (outputs: Output[]) => this.sink(outputs);
    this.runner = new GuestRunner(config.memoryPages, disk, sink, env, memory);
    this.outputs = new OutputQueue((o) => this.release(o), (e) => this.stop(e));
    if (io.observer?.received) this.runner.received = (i, p) => io.observer?.received?.(generation, i, p);
    if (!isProtected(mode)) {
      this.protection = null;
      return;
    }
    const link = linkSpec(config.latency, config.regions.primary, config.regions.secondary);
    this.protection = new Protection({ ...host, generation, sync: (r) => this.sync(r) }, io.witness, {
      ...DEFAULT_PROTECTION,
      sleep: (ms) => io.clock.sleep(ms),
      windowBytes: windowBytesFor(link),
    });
    const protection = this.protection;
    if (disk instanceof ReplicatedDisk) disk.mirror = (sector, data) => protection.mirror(sector, data);
    if (mode === "kemari") {
      const syncNow = () => protection.replicate((r) => this.sync(r));
      if (mutations.releaseBeforeAck) {
        // The bug: the event reaches its backend (and its outputs leave) first.
        this.runner.afterEvent = async () => {
          await syncNow();
          await io.faults.at("after-release");
        };
        return;
      }
      const tap = new EventTap(
        {
          runner: this.runner,
          syncNow,
          take: () => this.take(),
          // A landed event made the guest runnable: drive it now, not after a timer (workerd's wait for an idle loop).
          schedule: () => (host.wake ? host.wake() : io.schedule()),
          fenced: (e) => this.stop(e),
          active: () => host.isPrimary(),
        },
        config.kemari,
      );
      this.eventTap = tap;
      this.runner.tap = (event) => tap.tap(event);
      this.runner.settle = () => tap.settle();
      this.runner.afterEvent = async () => io.faults.at("after-release");
    }
  }

  get machine() {
    return this.runner.machine;
  }

  get secondary(): HostPlace | null {
    return this.protection?.secondary ?? null;
  }

  /** Where the guest's outputs go: to the output queue (none, kemari: their checkpoint is held) or into the epoch (remus). */
  private async sink(outputs: Output[]): Promise<void> {
    if (this.config.mode !== "remus" || mutations.releaseBeforeAck) {
      this.outputs.push(outputs);
      return;
    }
    this.epoch.hold(outputs);
    this.epochSoon();
  }

  /**
   * Outputs not yet at the witness, events not yet at their backends, and a
   * guest's end (HALT, or a fault) not yet in an acknowledged checkpoint: a
   * guest reads halted (or crashed) only once this is 0.
   */
  get outputsInFlight(): number {
    return this.outputs.inFlight + this.heldOutputs + (this.eventTap?.pending ?? 0) + (this.endInEpoch() ? 1 : 0);
  }

  /**
   * Remus: the guest ended in an epoch not yet acknowledged. Its end is seen
   * outside, like an output, so it waits for its epoch (the epoch's checkpoint
   * also carries its last disk writes); mode kemari's tap does the same with a
   * checkpoint of its own (EventTap.noteEnd).
   */
  private endInEpoch(): boolean {
    if (this.config.mode !== "remus" || mutations.endBeforeAck) return false;
    const state = this.machine.state;
    return (state === "halted" || state === "crashed") && (this.epochIsOpen() || this.epochFlights.length > 0);
  }

  /** The guest as it stands is what the secondary holds (a promotion's copy, an idle save resumed): Remus's open epoch starts empty. */
  fromAcknowledgedState(): void {
    this.epochInstret = this.machine.cpu.instret;
  }

  /** The output queue stopped: fenced (the witness refused this generation), or a failure no retry mends. */
  private stop(e: unknown): void {
    if (e instanceof Fenced) this.host.fence(e.message.replace(/^fenced: /, ""));
    else throw e;
  }

  /** One batch to the witness (which refuses a superseded generation: then this primary is fenced). */
  private async release(outputs: Output[]): Promise<void> {
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
   * The outputs a checkpoint carries, so a secondary that takes over can
   * release them: those on their way to the witness, an epoch's in flight,
   * and (remus) the open epoch's.
   */
  private carried(full: boolean): Output[] {
    if (full && mutations.fullWithoutHeldOutputs) return [];
    const queued = mutations.outputsNotCarried ? [] : this.outputs.unconfirmed();
    return [...queued, ...this.epochFlights.flatMap((f) => f.outputs), ...this.epoch.outputs];
  }

  /**
   * Stop-and-wait: one checkpoint of what changed, to the current secondary
   * (a full one when the replicator is new), the guest stopped throughout.
   * It carries the disk writes since the last one and the outputs above — in
   * a full checkpoint too, so a new secondary that takes over can release them.
   */
  async sync(r: Replicator): Promise<void> {
    // Remus's epochs in flight settle first: a stop-and-wait checkpoint follows them, never overtakes them.
    await r.idle();
    // A new checkpoint moves the sequence number an idle save holds: that save no longer describes the guest.
    this.runner.changing();
    const t0 = this.io.clock.now();
    const full = r.needsFull;
    const disk = this.disk as ReplicatedDisk;
    const stats = await r.sync(this.runner.machine, {
      diskSectors: this.config.diskSectors,
      // A full checkpoint carries the whole disk; an incremental one the writes since the last.
      sectors: full ? disk.entries() : disk.pending(),
      outputs: this.carried(full),
      at: (step) => this.io.faults.at(step),
      minFrames: this.io.faults.minFrames(),
      captured: (seq) => this.io.observer?.captured?.(this.generation, seq),
    });
    disk.acknowledged();
    // It holds the CPU as of now: as far as Remus's epochs go, nothing new has run since.
    this.epochInstret = this.runner.machine.cpu.instret;
    const ms = this.io.clock.now() - t0;
    this.synced(stats, ms, ms);
  }

  /**
   * Pipelined: take a checkpoint now (the guest is stopped: encoded and
   * copied at once) and send it while the guest runs on. Null when it must
   * go stop-and-wait instead: a full checkpoint is due, or no secondary the
   * witness knows of holds a whole copy yet.
   */
  take(): Flight | null {
    const r = this.protection?.ready;
    if (!r) return null;
    const t0 = this.io.clock.now();
    this.runner.changing();
    const disk = this.disk as ReplicatedDisk;
    const taken = disk.capture();
    const c = r.capture(this.runner.machine, {
      diskSectors: this.config.diskSectors,
      sectors: taken.sectors,
      outputs: this.carried(false),
      minFrames: this.io.faults.minFrames(),
      captured: (seq) => this.io.observer?.captured?.(this.generation, seq),
    });
    const pauseMs = this.io.clock.now() - t0;
    const landed = r.send(c, { at: (step) => this.io.faults.at(step) }).then((stats) => {
      disk.acknowledgedCapture(taken);
      this.synced(stats, pauseMs, this.io.clock.now() - t0);
    });
    // Not awaited here: its owner awaits `landed` (an unobserved rejection would be reported twice).
    landed.catch(() => undefined);
    return { landed, seq: c.seq, bytes: c.bytes, pages: c.pages.length, takenAt: t0 };
  }

  private synced(stats: SyncStats, pauseMs: number, flightMs: number): void {
    this.lastPauseMs = pauseMs;
    this.lastFlightMs = flightMs;
    this.totalPauseMs += pauseMs;
    this.lastSync = stats;
    this.io.observer?.synced?.(this.generation, stats, pauseMs, flightMs);
    this.io.observer?.changed?.();
  }

  // ---- Remus: epochs ----

  /** The first epoch boundary after `t`. */
  private nextBoundary(t: number): number {
    const ms = this.config.epochMs;
    const b = this.cadenceStart + (Math.floor((t - this.cadenceStart) / ms) + 1) * ms;
    // A boundary a rounding error away is this one, not the next: a timer for it would not advance time.
    return b - t < 0.001 ? b + ms : b;
  }

  /** End the current epoch at the next boundary (if no end is already coming). */
  epochSoon(): void {
    if (this.epochTimer || this.config.mode !== "remus") return;
    const now = this.io.clock.now();
    this.openedAt ??= now;
    const timer = new AbortController();
    this.epochTimer = timer;
    void this.io.clock.sleep(this.nextBoundary(now) - now, timer.signal).then(() => {
      if (this.epochTimer === timer) this.epochTimer = null;
      return this.commitEpoch();
    }).catch((e: unknown) => {
      if (!(e instanceof Fenced)) throw e;
    });
  }

  /**
   * The pump checks the time itself too: under load, timers can wait. An
   * epoch is due at the first boundary after it opened — so an output made by
   * a guest that was idle waits for the next tick of the cadence, as in Remus
   * — unless the window of epochs in flight is full (back-pressure: the open
   * epoch grows until one lands).
   */
  epochDue(): boolean {
    if (this.config.mode !== "remus" || this.windowFull() || !this.epochIsOpen()) return false;
    const now = this.io.clock.now();
    this.openedAt ??= now;
    return now >= this.nextBoundary(this.openedAt);
  }

  /**
   * Back-pressure: as many epochs in flight as the window allows, or as many
   * bytes as RAM should hold for them — counting the open epoch's dirty pages,
   * which its capture would add (with nothing in flight, one capture of any
   * size goes, as a single checkpoint always could).
   */
  private windowFull(): boolean {
    const f = this.epochFlights;
    if (f.length === 0) return false;
    // A stop-and-wait epoch is on its way, or waits to release its outputs in turn: nothing may follow it until it lands.
    if (f.some((x) => x.seq === 0)) return true;
    const next = this.machine.memory.dirtyPageCount * PAGE_SIZE;
    return f.length >= this.epochWindow || f.reduce((n, x) => n + x.bytes, 0) + next > MAX_EPOCH_BYTES_IN_FLIGHT;
  }

  epochIsOpen(): boolean {
    const m = this.machine;
    return m.memory.dirtyPageCount > 0 || !this.epoch.empty || (this.disk as ReplicatedDisk).pendingCount > 0 || m.cpu.instret !== this.epochInstret;
  }

  /**
   * End the epoch: take its checkpoint (memory, CPU, its disk writes and
   * held outputs) with the guest stopped, let the guest run on into the next
   * epoch, and release the epoch's outputs once the secondary acknowledges
   * it — Remus's pipeline. Several epochs may be in flight, up to the window;
   * their outputs leave in epoch order.
   */
  async commitEpoch(): Promise<void> {
    if (this.windowFull()) return;
    const protection = this.protection!;
    const runner = this.runner;
    let flight: EpochFlight | null = null;
    await runner.exclusive(() =>
      protection.replicate(async (rep) => {
        // Checked again with the guest to ourselves: a timer and the pump may both have asked.
        if (this.windowFull() || !this.epochIsOpen()) return;
        const outputs = this.epoch.outputs;
        const taken = this.take();
        this.epoch = new Epoch();
        // Its timer, if the pump got here first, would only wake the event loop (locally, every object's) for nothing.
        this.epochTimer?.abort();
        this.epochTimer = null;
        this.epochInstret = runner.machine.cpu.instret;
        this.openedAt = null;
        if (taken) {
          flight = { ...taken, outputs };
          this.epochFlights.push(flight);
          return;
        }
        // No pipeline to this secondary (a full checkpoint is due, or none holds a whole copy yet): stop-and-wait.
        const waiting: EpochFlight = { landed: Promise.resolve(), seq: 0, bytes: 0, pages: 0, takenAt: 0, outputs };
        this.epochFlights.push(waiting);
        try {
          await this.sync(rep);
        } catch (e) {
          // Not sent: the epoch stays open, its outputs held, for the next try.
          this.epochFlights.splice(this.epochFlights.indexOf(waiting), 1);
          this.epoch.hold(outputs);
          throw e;
        }
        if (this.epochFlights[0] !== waiting) {
          // Epochs before it have not landed yet (their outputs go first): it releases its own in turn.
          flight = waiting;
          return;
        }
        this.epochFlights.splice(this.epochFlights.indexOf(waiting), 1);
        this.outputs.push(outputs);
        await this.io.faults.at("after-release");
      }),
    );
    if (flight) {
      // The guest runs on while the epoch crosses; its landing (after those before it) releases its outputs.
      // The chain holds landings only: what follows one (the next commit) is not waited for by the next.
      const f: EpochFlight = flight;
      const landed = this.landings.then(() => this.landEpoch(f));
      this.landings = landed.catch(() => undefined);
      landed
        .then(() => (this.epochDue() ? this.commitEpoch() : this.epochSoon()))
        .catch((e: unknown) => {
          // Fenced: this primary stops. Anything else is a bug, and surfaces as one.
          if (!(e instanceof Fenced)) throw e;
        });
      return;
    }
    if (runner.machine.runnable || !this.epoch.empty || this.machine.memory.dirtyPageCount > 0) this.epochSoon();
  }

  /**
   * The epoch's checkpoint in flight lands, after every epoch before it. If it
   * failed, everything up to now goes again stop-and-wait (once the others in
   * flight have settled): that covers this epoch and the later ones in flight.
   * Its outputs leave.
   */
  private async landEpoch(flight: EpochFlight): Promise<void> {
    try {
      await flight.landed;
    } catch (e) {
      if (e instanceof Fenced || e instanceof InvariantError) throw e;
      await Promise.allSettled(this.epochFlights.map((f) => f.landed));
      await this.runner.exclusive(() => this.protection!.replicate((r) => this.sync(r)));
    }
    this.epochFlights.splice(this.epochFlights.indexOf(flight), 1);
    this.outputs.push(flight.outputs);
    await this.io.faults.at("after-release");
    if (this.host.wake) this.host.wake();
    else this.io.schedule();
  }

  // ---- Idle saves (src/protocol/idle-save.ts) ----

  /**
   * Protected: the secondary holds this guest's memory and disk exactly —
   * nothing dirtied or written since the last checkpoint, none in flight, no
   * output or event held, no Remus epoch open — and the witness knows it holds
   * a whole copy. In kemari only the CPU may have moved on (every checkpoint
   * carries the whole CPU).
   */
  caughtUp(): boolean {
    const r = this.protection?.ready;
    if (!r || r.flying > 0) return false;
    if (this.machine.memory.dirtyPageCount > 0 || (this.disk as ReplicatedDisk).pendingCount > 0) return false;
    // Remus: an open epoch will be committed (a checkpoint the save would not know of): wait for it.
    if (this.config.mode === "remus" && this.epochIsOpen()) return false;
    return this.outputsInFlight === 0 && this.epochFlights.length === 0;
  }

  /** Kemari: bring the secondary up to date with an idle guest (stop-and-wait; the guest is not running anyway). */
  async checkpointIdle(): Promise<void> {
    const protection = this.protection;
    if (!protection || this.config.mode !== "kemari") return;
    await this.runner.exclusive(() => protection.replicate((r) => this.sync(r)));
  }

  /** Remus: epochs whose checkpoints are on their way. */
  get epochsInFlight(): number {
    return this.epochFlights.length;
  }

  get heldOutputs(): number {
    return this.epoch.outputs.length + this.epochFlights.reduce((n, f) => n + f.outputs.length, 0);
  }

  // ---- Fencing without events ----

  /**
   * A primary that runs without events would never hear that the witness
   * moved the guest away (partition → failover → heal): so while it runs it
   * asks, every CHECK_IN_MS (or heartbeat interval, if longer), and learns why
   * it must stop (null: go on). An unreachable witness is no answer: outputs
   * still need it, so nothing leaks meanwhile. The check-ins are also how the
   * witness knows a running primary is alive: it pings only once they stop
   * (witness.ts, heartbeat) — one request a second, not a ping and an alarm
   * every interval.
   *
   * Returns the check-in's reply, when one went (null: none due, or one still
   * on its way). The guest does not wait for it (host.ts, pump): after a
   * failover the witness may sit a long round trip away, and a check-in the
   * pump awaited stopped the guest for that round trip every second (a
   * fifth of its time at 196 ms). Nothing needs the guest to wait: its
   * outputs are fenced by generation at the witness whatever the check-in says.
   */
  checkInDue(): Promise<string | null> | null {
    if (!this.protection || this.checkingIn) return null;
    const now = this.io.clock.now();
    if (now - this.lastCheckIn < checkInEveryMs(this.config.heartbeat.intervalMs)) return null;
    this.lastCheckIn = now;
    this.checkingIn = true;
    return this.io.witness.checkIn(this.generation).then(
      (reply) => (reply.ok ? null : reply.reason),
      () => null,
    ).finally(() => {
      this.checkingIn = false;
    });
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
      lastFlightMs: this.lastFlightMs,
      totalPauseMs: this.totalPauseMs,
      heldOutputs: this.heldOutputs,
      inFlight: this.inFlight(),
      epochOpen: this.config.mode === "remus" && this.epochIsOpen(),
      last: this.lastSync ? { ...this.lastSync, sentPages: this.lastSync.sentPages.slice(0, 64) } : null,
    };
  }

  /** The checkpoint on its way to the secondary, if any (the guest runs on meanwhile). */
  private inFlight(): InFlight | null {
    const f = this.eventTap?.flight ?? this.epochFlights.find((x) => x.seq !== 0) ?? null;
    // A fenced primary's status is frozen: nothing of it is on its way any more.
    if (!f || f.seq === 0 || !this.host.isPrimary()) return null;
    return { seq: f.seq, bytes: f.bytes, pages: f.pages, sinceMs: this.io.clock.now() - f.takenAt };
  }

  /** The disk as a reader outside is told it: acknowledged unless the live view is asked for. */
  readDisk(sector: number, count: number, view: "acked" | "live"): Uint8Array {
    const d = this.disk;
    return view === "acked" && d instanceof ReplicatedDisk ? d.readAcked(sector, count) : d.read(sector, count);
  }
}
