/**
 * Kemari's event tap: what happens when the guest notifies a device.
 *
 * - Which events need a checkpoint (`syncOn`): "outputs" — only events that
 *   leave the guest's replicated world (console, net-tx); a block request's
 *   writes are replicated state and ride with the next checkpoint. Or
 *   "every-event", Kemari v1.0's (Xen 3.3's shared storage made it sync at
 *   storage events too).
 * - Stop-and-wait (`pipeline: false`, v1.0): the guest stops at the event
 *   until the secondary holds the checkpoint; then the event reaches its
 *   backend.
 * - Pipelined (`pipeline: true`; Kemari for KVM v0.2: "introduce a queue in
 *   event-tap to make VM sync live"): the event waits in a queue and the
 *   guest runs on; when it stops running (it waits, or its slice ends) the
 *   checkpoint is taken — encoded and copied, so the guest can run on at once
 *   — and sent. A guest that runs on when its slice ends (its time or its
 *   instructions were spent) gets one more slice first: the events it raised
 *   in the slice just ended share a checkpoint with those of the next, so a
 *   busy guest takes half as many (each costs a request to the secondary and
 *   a durable write there) and its events wait at most a slice longer. A
 *   guest that stops — it waits, halts, is paused — has its checkpoint at
 *   once, and an event that has already waited through a slice end (behind a
 *   checkpoint in flight) is not held again. An event reaches its backend when a checkpoint that holds its
 *   request is acknowledged, with the ring's req_prod as that checkpoint
 *   captured it, so a request posted later is not acted on before its own
 *   checkpoint. Events reach their backends in order. One checkpoint is in
 *   flight at a time; the events raised meanwhile share the next one (taken
 *   at the end of the guest's next run), so RAM holds at most one captured
 *   checkpoint. The guest sees only a slower device. A full checkpoint (a new
 *   secondary) and any failed transfer fall back to stop-and-wait.
 *
 * - The guest's end (it halts, or a fault crashes it) is seen outside, so it
 *   waits for a checkpoint as an output does, in both tap modes (noteEnd).
 *
 * Fault steps in the pipeline: `before-transfer` once the checkpoint is
 * taken (the guest may already have run on), `mid-transfer` between its
 * frames, `after-ack` once it is acknowledged and before any event it
 * covers reaches its backend, `after-release` after each such event.
 */
import type { KemariOptions } from "../host/guest-config.ts";
import type { GuestRunner, NotifyEvent } from "../host/runner.ts";
import { Fenced } from "../kemari/protection.ts";
import { InvariantError } from "../kemari/replicator.ts";
import { mutations } from "./mutations.ts";

/** What the tap needs of its primary. */
export interface TapHost {
  readonly runner: GuestRunner;
  /** A stop-and-wait checkpoint of everything outstanding (the caller holds the guest), through every way the link fails. */
  syncNow(): Promise<void>;
  /** Take a checkpoint for the pipeline, the guest stopped (null: it must go stop-and-wait — a full one is due). */
  take(): Flight | null;
  /** Make sure the guest runs soon (an event reached it). */
  schedule(): void;
  /** The witness moved the guest away (a flight met a refusal). */
  fenced(e: Fenced): void;
  /** Still the primary? A fenced host delivers nothing more. */
  active(): boolean;
}

/** A checkpoint on its way: resolves once the secondary holds it; throws if it does not. */
export interface Flight {
  landed: Promise<void>;
  seq: number;
  bytes: number;
  pages: number;
  takenAt: number;
}

interface Waiting {
  /** null: the guest's end (HALT, or a fault that crashed it) — an event too, since status shows it outside. */
  event: NotifyEvent | null;
  /** Covered by a checkpoint taken (the req_prod it holds; undefined: no limit needed); null: not yet. */
  upTo: number | undefined | null;
  /** How many times the guest had settled when it was raised: it has met a slice end since once `settles` is further on. */
  raisedAt: number;
}

/** Devices whose events leave the replicated world. */
const OUTPUT_DEVICES = new Set(["console", "net-tx"]);

export class EventTap {
  private readonly waiting: Waiting[] = [];
  /** The checkpoint in flight, and the events it covers. */
  flight: (Flight & { events: number }) | null = null;
  private stopped = false;
  /** The guest's end has been queued for its checkpoint (once: a machine that ended stays so). */
  private endNoted = false;
  /** Times the guest has settled (a slice ended, or it stopped). */
  private settles = 0;

  constructor(
    private readonly host: TapHost,
    private readonly options: KemariOptions,
  ) {}

  /** Does an event on `port` need a checkpoint before it reaches its backend? */
  needsCheckpoint(port: number): boolean {
    if (this.options.syncOn === "every-event") return true;
    return OUTPUT_DEVICES.has(this.host.runner.deviceKind(port) ?? "");
  }

  /** Events raised and not yet at their backends (the guest's end among them, until its checkpoint lands). */
  get pending(): number {
    return this.waiting.length;
  }

  /** The runner's tap (called with the guest stopped at the event). */
  async tap(event: NotifyEvent): Promise<void | "deferred"> {
    const sync = this.needsCheckpoint(event.port);
    if (!this.options.pipeline || this.stopped) {
      if (sync) await this.host.syncNow();
      return;
    }
    if (this.waiting.length === 0 && !sync) return;
    // Taken at the end of this run of the guest (`settle`), not now: the events
    // a guest raises back to back (a driver filling its ring) share one checkpoint.
    this.waiting.push({ event, upTo: sync ? null : undefined, raisedAt: this.settles });
    return "deferred";
  }

  /**
   * The guest stopped running (it waits, or its slice ended): if events wait
   * for a checkpoint and none is in flight, take one now — unless the guest
   * runs on and every one of them was raised in the slice just ended
   * (`coalescing`): then at the end of the next.
   */
  async settle(): Promise<void> {
    if (this.stopped) return;
    this.settles++;
    this.noteEnd();
    if (this.flight || !this.waiting.some((w) => w.upTo === null)) return;
    if (this.coalescing()) return;
    const flight = this.options.pipeline ? this.host.take() : null;
    if (flight) {
      this.launch(flight);
      return;
    }
    // A full checkpoint is due (or no secondary yet): stop-and-wait, then the events go through.
    await this.host.syncNow();
    this.coverAll();
    await this.deliverCovered();
  }

  /** Pipelined, the guest runs on, and no waiting event has met a slice end before this one: wait for the next. */
  private coalescing(): boolean {
    if (!this.options.pipeline || !this.host.runner.machine.runnable) return false;
    if (mutations.coalesceUnbounded) return true;
    return this.waiting.every((w) => w.upTo !== null || w.raisedAt === this.settles - 1);
  }

  /**
   * The guest halted or crashed: that is seen outside (status shows the state
   * and the exit code), so it waits for a checkpoint that holds it, like an
   * output — in both tap modes. Until then status reads it as running, and the
   * checkpoint also carries the disk writes made since the last one: a client
   * that sees `halted` reads the whole disk in the acknowledged view. Without
   * it a nondeterministic guest's exit code could change across a failover.
   */
  private noteEnd(): void {
    const state = this.host.runner.machine.state;
    if (this.endNoted || (state !== "halted" && state !== "crashed")) return;
    this.endNoted = true;
    if (!mutations.endBeforeAck) this.waiting.push({ event: null, upTo: null, raisedAt: this.settles });
  }

  /** The `req_prod` a checkpoint taken now holds for `w`'s ring (undefined: no limit, as for the guest's end). */
  private coverNow(w: Waiting): number | undefined {
    return w.event ? this.host.runner.reqProd(w.event.port) : undefined;
  }

  private coverAll(): void {
    for (const w of this.waiting) if (w.upTo === null) w.upTo = this.coverNow(w);
  }

  /** Cover every waiting event by `flight` (taken just now) and see it land. */
  private launch(flight: Flight): void {
    let events = 0;
    for (const w of this.waiting) {
      if (w.upTo !== null) continue;
      w.upTo = mutations.pipelineUnbounded ? undefined : this.coverNow(w);
      events++;
    }
    this.flight = { ...flight, events };
    void this.fly(flight);
  }

  private async fly(flight: Flight): Promise<void> {
    const runner = this.host.runner;
    try {
      try {
        await flight.landed;
      } catch (e) {
        if (e instanceof Fenced || e instanceof InvariantError) throw e;
        // Not acknowledged: stop the guest and send everything outstanding, stop-and-wait, through every way the link fails.
        await runner.exclusive(async () => {
          await this.host.syncNow();
          this.coverAll();
        });
      }
      await runner.exclusive(() => this.land());
    } catch (e) {
      if (!(e instanceof Fenced)) throw e;
      this.stopped = true;
      this.waiting.length = 0;
      this.flight = null;
      this.host.fenced(e);
      return;
    }
    this.host.schedule();
  }

  /** The checkpoint landed (the guest stopped): the events it covers reach their backends, in order. */
  private async land(): Promise<void> {
    this.flight = null;
    if (!this.host.active()) {
      this.stopped = true;
      this.waiting.length = 0;
      return;
    }
    await this.deliverCovered();
    // The rest wait for the next checkpoint: taken at the end of the guest's next run, or now if it will not run.
    if (!this.host.runner.machine.runnable) await this.settle();
  }

  private async deliverCovered(): Promise<void> {
    const runner = this.host.runner;
    while (this.waiting.length > 0 && this.waiting[0].upTo !== null) {
      const w = this.waiting.shift()!;
      if (w.event) await runner.deliverEvent(w.event, w.upTo ?? undefined);
    }
  }
}
