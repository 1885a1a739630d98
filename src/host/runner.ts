/**
 * A host running a guest: the machine plus its backends and the loop that
 * drives them. Plain TypeScript; the GuestHost Durable Object owns one and
 * supplies the disk, the way to the switch, and the scheduling.
 *
 * The loop is where Kemari taps the event channel: when the guest notifies a
 * bound port, `tap` runs (a synchronisation to the secondary, in mode kemari)
 * and only afterwards does the event reach its backend.
 */
import type { GuestState } from "../guest/abi.ts";
import { defaultEnv, Machine, type Binding, type MachineEnv, type RunResult } from "../guest/machine.ts";
import type { Backend, DeviceHost, Disk, Output } from "../devices/backend.ts";
import { createBackend } from "../devices/index.ts";
import { NetRxBackend } from "../devices/net.ts";
import type { Image } from "../image/image.ts";
import type { Memory } from "../guest/memory.ts";
import { SLICE_MS } from "./slice-budget.ts";

const DEVICE_NAMES = ["console", "net-tx", "net-rx", "blk"];

/** Events one slice delivers at most before the host yields the thread. */
export const EVENTS_PER_SLICE = 16;
/** At most this many instructions in one step request (a slice's worth, ≈ 10 ms). */
export const STEP_INSTRUCTIONS = 1_000_000;

export type NotifyEvent = Extract<RunResult, { kind: "notify" }>;

/**
 * Runs before an event reaches its backend; resolving lets the event
 * through — or, with "deferred", says the tap took the event and will hand
 * it to its backend itself (`deliverEvent`), once its checkpoint is held.
 */
export type EventTap = (event: NotifyEvent) => Promise<void | "deferred">;

export interface RunnerCounters {
  /** NOTIFYs delivered to backends. */
  events: number;
  outputs: number;
  consoleBytes: number;
  packetsOut: number;
  packetsIn: number;
}

export interface DeviceStatus {
  kind: string;
  port: number;
  ring: number;
  reqProd: number;
  rspProd: number;
  /** The backend's private consumer cursor (not replicated). */
  reqCons: number;
  requests: number;
  errors: number;
}

export class GuestRunner implements DeviceHost {
  readonly machine: Machine;
  private readonly backends: (Backend | null)[] = [];
  private readonly pendingInbound: Uint8Array[] = [];
  readonly counters: RunnerCounters = { events: 0, outputs: 0, consoleBytes: 0, packetsOut: 0, packetsIn: 0 };
  /** Serialises slices, steps and restores: the guest runs on one thread of control. */
  private lock: Promise<unknown> = Promise.resolve();
  tap: EventTap = async () => {};
  /** A packet went into a net-rx buffer (see DeviceHost.received). */
  received?: (index: number, packet: Uint8Array) => void;
  /** Runs at the end of every slice and step, the guest still to the runner (a pipelined tap takes its checkpoint here). */
  settle: () => Promise<void> = async () => {};
  /** Runs before anything may change the guest (a slice, a step, a packet, an event): an idle save stops describing it. */
  changing: () => void = () => {};
  /** Runs after an event has reached its backend and its outputs are out. */
  afterEvent: (event: NotifyEvent) => Promise<void> = async () => {};

  constructor(
    pages: number,
    readonly disk: Disk,
    private readonly sink: (outputs: Output[]) => Promise<void>,
    /** The guest's clock and randomness (virtual under the simulator); also the clock of a slice's time budget. */
    private readonly env: MachineEnv = defaultEnv,
    /** Guest memory to adopt (a takeover's replica), instead of fresh zeroed memory. */
    bytes?: Uint8Array,
  ) {
    this.machine = new Machine(pages, env, bytes);
    this.machine.onConnect = (b) => this.attach(b);
  }

  get memory(): Memory {
    return this.machine.memory;
  }

  get state(): GuestState {
    return this.machine.state;
  }

  load(image: Image): void {
    this.machine.load(image);
  }

  raise(port: number): void {
    this.machine.raise(port);
  }

  async release(outputs: Output[]): Promise<void> {
    await this.sink(outputs);
    for (const o of outputs) {
      this.counters.outputs++;
      if (o.device === "console") this.counters.consoleBytes += o.data.length;
      else this.counters.packetsOut++;
    }
  }

  /** Attach a backend to a binding, rebuilding its cursors from the ring. */
  private attach(binding: Binding): void {
    const backend = createBackend(this, binding);
    this.backends[binding.port] = backend;
    if (backend instanceof NetRxBackend) {
      for (const p of this.pendingInbound.splice(0)) backend.deliver(p);
    }
  }

  /**
   * Attach backends to every binding the machine already has: after a restore,
   * the new host's backends learn where the guest was from the rings alone.
   * Outstanding requests are then processed again, as Kemari's backends do.
   */
  async reattach(): Promise<void> {
    this.attachAll();
    for (const backend of this.backends) if (backend) await backend.notify();
  }

  /**
   * Attach backends to every binding without processing anything: a guest
   * resumed from its idle save had every request it notified processed
   * before the save, and the rest wait for its next NOTIFY, as they did.
   */
  attachAll(): void {
    for (const b of this.machine.bindings) if (b) this.attach(b);
  }

  /** Packets that arrived and wait for a net-rx buffer (or for net-rx to be connected), oldest first. */
  queuedInbound(): Uint8Array[] {
    const rx = this.backends.find((b): b is NetRxBackend => b instanceof NetRxBackend);
    return [...this.pendingInbound, ...(rx?.queued ?? [])];
  }

  /** Packets an idle save kept: they wait again, for the net-rx backend `attachAll` makes. */
  restoreInbound(packets: Uint8Array[]): void {
    this.pendingInbound.push(...packets);
  }

  /** A packet from the outside world for the guest's net-rx device. */
  /**
   * A packet from the outside world for the guest's net-rx device. It is put
   * into the guest's memory with the guest to itself, like every other write
   * to guest memory: so nothing changes memory while a checkpoint is taken,
   * and the checkpoint can be encoded straight from it, page by page.
   */
  deliverInbound(packet: Uint8Array): Promise<void> {
    this.counters.packetsIn++;
    return this.exclusive(async () => {
      this.changing();
      const rx = this.backends.find((b): b is NetRxBackend => b instanceof NetRxBackend);
      if (rx) rx.deliver(packet);
      else if (this.pendingInbound.length < 256) this.pendingInbound.push(packet);
    });
  }

  get rxDropped(): number {
    const rx = this.backends.find((b): b is NetRxBackend => b instanceof NetRxBackend);
    return rx ? rx.dropped : 0;
  }

  /**
   * Run up to `budget` instructions or `maxEvents` events, delivering each
   * event after the tap lets it through, and no more events once the slice
   * has used its time (SLICE_MS). Bounding the events matters as much as
   * bounding the instructions: a guest that syncs back to back is never idle,
   * and the host must hand the thread back between slices. The time matters
   * when the tap waits for each synchronisation (stop-and-wait): at an 80 ms
   * round trip, 16 events held the guest, and every request for it, for
   * 1.3 s.
   */
  async runSlice(budget: number, maxEvents = EVENTS_PER_SLICE): Promise<void> {
    // Back-pressure: copies kept for checkpoints in flight reached their limit; run on once they land (not holding the guest).
    await this.machine.memory.unbraked();
    return this.exclusive(async () => {
      this.changing();
      await this.runEvents(budget, maxEvents);
    });
  }

  /**
   * Execute `n` instructions of a paused guest, then pause again — fewer if it
   * stops, or once a slice's worth of work is done (STEP_INSTRUCTIONS, or
   * EVENTS_PER_SLICE events, or SLICE_MS once an event was delivered: each may
   * be a sync), so no request holds the guest for longer than a slice.
   * Returns how many it executed: the caller asks again for the rest.
   */
  async step(n: number, maxEvents = EVENTS_PER_SLICE): Promise<number> {
    await this.machine.memory.unbraked();
    return this.exclusive(async () => {
      this.changing();
      const m = this.machine;
      if (!m.resume()) return 0;
      const start = m.cpu.instret;
      await this.runEvents(Math.min(n, STEP_INSTRUCTIONS), maxEvents);
      if (m.state === "running" || m.state === "waiting") {
        m.state = "paused";
        // It will not run on by itself: what the tap held for its next slice is taken now.
        await this.settle();
      }
      return m.cpu.instret - start;
    });
  }

  /**
   * The work of a slice or a step (the caller holds the guest): up to `budget`
   * instructions and `maxEvents` events, none once SLICE_MS has passed after
   * the first, delivering each event after the tap lets it through; then the
   * backends settle.
   */
  private async runEvents(budget: number, maxEvents: number): Promise<void> {
    const m = this.machine;
    const started = this.env.now();
    let left = budget;
    let events = 0;
    while (left > 0 && m.runnable && events < maxEvents && !m.memory.braking && !(events > 0 && this.env.now() - started >= SLICE_MS)) {
      const before = m.cpu.instret;
      const r = m.run(left);
      left -= m.cpu.instret - before;
      if (r.kind === "notify") {
        events++;
        await this.deliver(r);
      }
    }
    await this.settle();
  }

  /** Run `fn` with the guest to itself (no slice is running). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private async deliver(event: NotifyEvent): Promise<void> {
    if ((await this.tap(event)) === "deferred") return;
    await this.deliverEvent(event);
  }

  /** Hand an event to its backend (`upTo`: only requests below this ring index). Call with the guest to itself. */
  async deliverEvent(event: NotifyEvent, upTo?: number): Promise<void> {
    this.changing();
    this.counters.events++;
    await this.backends[event.port]?.notify(upTo);
    await this.afterEvent(event);
  }

  /** The req_prod of the ring bound to `port` (what a checkpoint taken now holds of its requests). */
  reqProd(port: number): number | undefined {
    return this.backends[port]?.ring.reqProd;
  }

  /** The device kind bound to `port` (console, net-tx, net-rx, blk), if any. */
  deviceKind(port: number): string | undefined {
    const b = this.machine.bindings[port];
    return b ? DEVICE_NAMES[b.kind] : undefined;
  }

  devices(): DeviceStatus[] {
    const names = DEVICE_NAMES;
    const out: DeviceStatus[] = [];
    for (const b of this.machine.bindings) {
      if (!b) continue;
      const be = this.backends[b.port];
      out.push({
        kind: names[b.kind],
        port: b.port,
        ring: b.ring,
        reqProd: be ? be.ring.reqProd : 0,
        rspProd: be ? be.ring.rspProd : 0,
        reqCons: be ? be.reqCons : 0,
        requests: be ? be.stats.requests : 0,
        errors: be ? be.stats.errors : 0,
      });
    }
    return out;
  }
}
