/**
 * A host: one Durable Object in one region, playing a "physical machine" for
 * a guest. The protocol — its role (primary, secondary, fenced), the event
 * tap, checkpoints, takeover — is plain code in src/protocol/host.ts; this
 * class adapts it to the platform and decides nothing of its own:
 * - RPC: each method below is the protocol's, wrapped so errors cross as values;
 * - SQLite: the host's meta, live disk and acknowledged copy (host-store.ts);
 * - time: a timer drives the guest in slices, an alarm is the durable backstop;
 * - faults: a cut link and crashes at named steps (host-faults.ts);
 * - the live stream's outbox (outbox.ts), and bench hooks (host-bench.ts).
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../src/env.ts";
import type { Image } from "../src/image/image.ts";
import { GuestError, outcome, type Outcome } from "../src/host/errors.ts";
import type { GuestConfig } from "../src/host/guest-config.ts";
import type { HostPlace, HostStatus } from "../src/host/status.ts";
import type { FaultKind, FaultWhen } from "../src/kemari/faults.ts";
import type { SyncReply } from "../src/kemari/replicator.ts";
import { BACKSTOP_MS, Host, RUNNING_BACKSTOP_MS } from "../src/protocol/host.ts";
import { peekFrame } from "../src/kemari/checkpoint.ts";
import type { CheckInReply, HoldReply, HostIO, PingReply, RecordReply, SecondaryReply, WitnessLink } from "../src/protocol/ports.ts";
import { HostFaults } from "./host-faults.ts";
import { SqlHostStore } from "./host-store.ts";
import { Outbox } from "./outbox.ts";
import { benchFloor, benchSync, benchWrite, type BenchSyncResult } from "./host-bench.ts";
import { Meter, meteredStorage, meterEntryPoints, type MeterReading } from "./meter.ts";

export type { PingReply } from "../src/protocol/ports.ts";

/** A destroyed guest's rows deleted per timer turn: ~10 ms of SQLite work locally. */
const WIPE_BATCH_ROWS = 512;
/** When the alarm finishes a wipe that eviction interrupted. */
const WIPE_BACKSTOP_MS = 5_000;



export class GuestHost extends DurableObject<Env> {
  /** What this object costs (meter.ts): read by the bench. */
  readonly meter: Meter;
  private readonly storage: DurableObjectStorage;
  private readonly store: SqlHostStore;
  private readonly faults: HostFaults;
  private readonly outbox: Outbox;
  readonly host: Host;
  private kick: ReturnType<typeof setTimeout> | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.meter = Meter.of(ctx.id);
    this.storage = meteredStorage(ctx.storage, this.meter);
    this.store = new SqlHostStore(this.storage);
    this.faults = new HostFaults(ctx, this.store.replica, this.store.idle, () => this.host.idleSaveCleared());
    this.outbox = new Outbox(
      () => (this.host.role.kind === "primary" ? { primary: this.host.role.primary, generation: this.host.role.generation } : null),
      (g, events) => this.faults.net<boolean>(() => this.switchStub().publish(g, events)),
      this.meter,
    );
    const io: HostIO = {
      clock: this.meter.clock,
      store: this.store,
      witness: this.witnessLink(),
      peer: (place) => {
        const stub = this.hostStub(place);
        return {
          receive: (frame) => this.faults.net<SyncReply>(() => stub.receive(frame)),
          diskWrite: (g, s, d) => this.faults.net<SyncReply>(() => stub.diskWrite(g, s, d)),
        };
      },
      faults: this.faults,
      observer: { synced: (g, s, ms, flightMs) => this.outbox.synced(g, s, ms, flightMs), changed: () => this.outbox.changed() },
      schedule: () => void this.schedule(),
      yieldToRequests: () => this.yieldToRequests(),
      // A checkpoint's later frames wait for a timer first (replicator.ts, pace): a large checkpoint goes
      // out as several frames, and waiting lets workerd's event loop go idle between them, so requests from
      // outside get in. A first frame does not: a timer turn cost the usual sync of a few pages (one frame)
      // ~1.5 ms locally.
      turn: () => this.turn(),
    };
    this.host = new Host(io);
    // Resumed in place from its idle save, with an event pending: it runs at once.
    if (this.host.runnable) void this.schedule();
  }

  private witnessLink(): WitnessLink {
    const sw = () => this.switchStub();
    const net = <T,>(fn: () => PromiseLike<T>) => this.faults.net(fn);
    return {
      record: (g, outputs) => net<RecordReply>(() => sw().record(g, outputs)),
      replaceSecondary: (g, failed, held) => net<SecondaryReply>(() => sw().replaceSecondary(g, failed, held)),
      secondaryReady: (g, s) => net<void>(() => sw().secondaryReady(g, s)),
      primaryLost: (g) => net<void>(() => sw().primaryLost(g)),
      checkIn: (g) => net<CheckInReply>(() => sw().checkIn(g)),
    };
  }

  private switchStub() {
    return this.env.SWITCH.get(this.env.SWITCH.idFromName(this.host.config!.id));
  }

  private hostStub(place: HostPlace) {
    const ns = this.env.HOST;
    const id = ns.idFromName(place.name);
    return place.region ? ns.get(id, { locationHint: place.region as DurableObjectLocationHint }) : ns.get(id);
  }

  // ---- The protocol, over RPC ----

  start(config: GuestConfig, image: Image, switchName: string, self: HostPlace, secondary: HostPlace | null, paused = false): Promise<Outcome<HostStatus>> {
    return outcome(() => this.host.start(config, image, switchName, self, secondary, paused));
  }

  init(config: GuestConfig, switchName: string, self: HostPlace, generation: number): Promise<Outcome<void>> {
    return outcome(() => {
      this.cutOff();
      this.host.init(config, switchName, self, generation);
    });
  }

  async receive(frame: Uint8Array): Promise<SyncReply> {
    if (this.faults.partitioned) return { ok: false, code: "unreachable", reason: "host is cut off" };
    await this.holdReprotection(frame);
    const reply = this.host.receive(frame);
    if (reply.ok && reply.committed) this.faults.acknowledged(this.host.holds().instructions ?? 0);
    return reply;
  }

  /** The test-only hook TEST_HOLD_REPROTECTION_MS (src/env.ts): hold a re-protection's full checkpoint open. */
  private async holdReprotection(frame: Uint8Array): Promise<void> {
    const ms = Number(this.env.TEST_HOLD_REPROTECTION_MS ?? 0);
    if (ms > 0 && this.host.role.kind === "secondary" && this.host.role.generation >= 1 && peekFrame(frame)?.full) {
      await this.meter.sleep(ms);
    }
  }

  diskWrite(generation: number, sector: number, data: Uint8Array): SyncReply {
    if (this.faults.partitioned) return { ok: false, code: "unreachable", reason: "host is cut off" };
    return this.host.diskWrite(generation, sector, data);
  }

  promote(generation: number, paused: boolean): Promise<Outcome<{ takeoverMs: number }>> {
    return outcome(() => {
      this.cutOff();
      return this.host.promote(generation, paused);
    });
  }

  holds(): HoldReply {
    if (this.faults.partitioned) throw new Error("host is cut off");
    return this.host.holds();
  }

  ping(generation: number): PingReply {
    if (this.faults.partitioned) return { ok: false, code: "unreachable", reason: "host is cut off" };
    return this.host.ping(generation);
  }

  /** A call that a cut link stops. */
  retire(generation: number): boolean {
    return !this.faults.partitioned && this.host.retire(generation);
  }

  fault(kind: FaultKind, at: FaultWhen): Promise<Outcome<void>> {
    return outcome(() => {
      // A count the guest has already passed (the primary's, or the copy's on a secondary): the crash is now.
      const reached = typeof at === "object" && at.instruction <= this.reachedInstructions();
      this.faults.inject(kind, reached ? "now" : at);
    });
  }

  /** The instruction count this host's guest (or its copy) has reached: where a crash at a count is measured. */
  private reachedInstructions(): number {
    const held = this.host.holds();
    if (held.role === "primary") {
      try {
        return this.host.status().instructions;
      } catch {
        return 0;
      }
    }
    return held.instructions ?? 0;
  }

  private cutOff(): void {
    if (this.faults.partitioned) throw new GuestError("unavailable", "host is cut off");
  }

  // ---- The guest, as the switch and the API see it ----

  status(): Promise<Outcome<HostStatus>> {
    return outcome(() => this.host.status());
  }

  pause(): Promise<Outcome<HostStatus>> {
    return outcome(() => this.host.pause());
  }

  resume(): Promise<Outcome<HostStatus>> {
    return outcome(() => this.host.resume());
  }

  step(instructions: number): Promise<Outcome<{ executed: number }>> {
    return outcome(() => this.host.step(instructions));
  }

  inbound(packet: Uint8Array): Promise<Outcome<void>> {
    return outcome(() => {
      if (this.faults.partitioned) throw new GuestError("unavailable", "the guest's host is cut off from the network");
      this.host.inbound(packet);
    });
  }

  readMemory(addr: number, len: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => this.host.readMemory(addr, len));
  }

  readDisk(sector: number, count: number, view: "acked" | "live" = "acked"): Promise<Outcome<Uint8Array>> {
    return outcome(() => this.host.readDisk(sector, count, view));
  }

  /** A dashboard joined the guest's stream (the switch says so): the outbox sends everything again. */
  watch(): void {
    this.outbox.watch();
  }

  /** What a host holds, for tests and the dashboard. */
  replicaStatus() {
    return this.host.replicaStatus(this.store.replica.sectorsHeld());
  }

  /**
   * The guest stops and is forgotten at once; the space its pages took is
   * freed afterwards, a batch at a time with a timer turn between (deleting a
   * 64 MiB copy in one go held the thread for 200–700 ms, and a delete's
   * answer waited for it). The alarm is the backstop: an object evicted
   * before the wipe is done finishes it when the alarm wakes it.
   */
  async destroy(): Promise<void> {
    await this.host.destroy();
    await this.storage.setAlarm(Date.now() + WIPE_BACKSTOP_MS);
    // A wipe that fails here is finished by the alarm set above; say so rather than leave a rejection unhandled.
    this.wipe().catch((e: unknown) => console.warn(`wipe after destroy failed, the alarm will finish it: ${String(e)}`));
    Meter.forget(this.ctx.id);
  }

  private wiping: Promise<void> | null = null;

  private wipe(): Promise<void> {
    this.wiping ??= (async () => {
      while (!this.store.wipeSome(WIPE_BATCH_ROWS)) await this.turn();
      await this.storage.deleteAlarm();
      await this.storage.deleteAll();
    })().finally(() => (this.wiping = null));
    return this.wiping;
  }

  // ---- Driving the guest ----

  /** Make sure a runnable guest has a pump coming: at once, with the alarm as the durable backstop. */
  private async schedule(): Promise<void> {
    if (!this.host.runnable) return;
    if (!this.kick) {
      this.kick = this.meter.setTimeout(() => {
        this.kick = null;
        void this.pump();
      }, 0);
    }
    if ((await this.storage.getAlarm()) === null) await this.storage.setAlarm(Date.now() + BACKSTOP_MS);
  }

  private async pump(): Promise<void> {
    // Running the guest is active time, between its timers too (meter.ts).
    await this.meter.busyWhile(() => this.host.pump());
  }

  /** The backstop; also how a restarted primary with an alarm pending notices that it lost its guest (else the witness notices: its check-ins stop). */
  override async alarm(): Promise<void> {
    // Only a host with no guest can hold a discarded one's rows: no storage read for the others.
    if (this.host.role.kind === "unassigned" && this.store.discardedLeft) {
      await this.wipe();
      return;
    }
    if (this.host.role.kind === "lost") {
      await this.host.reportLost();
      return;
    }
    void this.pump();
    // A pump that is running keeps its backstop too: the guest may be waiting only for a moment, and a
    // landing that makes it runnable again does not schedule a running pump (host.ts, wake).
    if (this.host.runnable || this.host.pumpRunning) await this.storage.setAlarm(Date.now() + RUNNING_BACKSTOP_MS);
  }

  /**
   * Let queued requests in: wait for a timer. workerd takes in requests from
   * outside (and runs timers) only once its event loop goes idle, and a timer
   * is what lets it go idle between two slices. (A yield by a round trip to
   * the switch, which it used to be but for every 8th slice, let other
   * objects' calls in, not requests from outside: a status request waited
   * ~300 ms behind one computing guest; ~40 ms now. And it cost a billed
   * request per slice.) A modelled link's messages do not wait for this: the
   * pump delivers those due between slices.
   */
  private async yieldToRequests(): Promise<void> {
    this.outbox.flushIfDue();
    await this.turn();
  }

  /** Wait for a timer: workerd takes in requests from outside only once its event loop goes idle. */
  private turn(): Promise<void> {
    return this.meter.sleep(0);
  }

  // ---- Measurement hooks for `npm run bench` (no API route reaches them; host-bench.ts) ----

  benchSync(syncs: number, pages: number, change: "rewrite" | "word"): Promise<BenchSyncResult> {
    return benchSync(this.host.guest(), syncs, pages, change);
  }

  benchFloor(rounds: number, pages: number): Promise<{ ms: number; emptyMs: number; carryMs: number }> {
    return benchFloor(this.hostStub(this.host.guest().secondary!), rounds, pages);
  }

  benchMeter(resetPeak = false): MeterReading {
    return this.meter.bench(this.ctx.storage, resetPeak);
  }

  benchNothing(): number {
    return 0;
  }

  benchCarry(payload: Uint8Array): number {
    return payload.length;
  }

  benchWrite(payload: Uint8Array, pages: number): number {
    return benchWrite(this.ctx.storage, payload, pages);
  }
}

// Every entry point is a billed request (meter.ts); the bench hooks are not counted.
meterEntryPoints(GuestHost, "request", ["start", "init", "receive", "diskWrite", "promote", "holds", "ping", "retire", "fault", "status", "pause", "resume", "step", "inbound", "readMemory", "readDisk", "replicaStatus", "watch", "destroy"]);
meterEntryPoints(GuestHost, "alarm", ["alarm"]);
