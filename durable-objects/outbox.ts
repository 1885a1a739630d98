/**
 * Events for the switch's live stream, sent in batches off the sync path:
 * at most one batch every 100 ms (the pump sends one itself when due, as
 * timers can wait under load), at most 500 events a batch.
 *
 * Only while somebody watches: each batch's reply says whether a dashboard
 * is connected, and the switch calls `watch()` when one joins. Unwatched, a
 * batch goes only when the guest's coarse state changes (running, halted,
 * crashed: what the directory's summary shows) — a running guest nobody
 * watches would otherwise cost ten requests a second to its switch.
 */
import { event, MAX_LISTED_PAGES, type StreamEvent } from "../src/events/messages.ts";
import type { SyncStats } from "../src/kemari/replicator.ts";
import type { Primary } from "../src/protocol/primary.ts";
import type { Meter } from "./meter.ts";

const BATCH_EVERY_MS = 100;
const MAX_BATCH = 500;

export class Outbox {
  private events: StreamEvent[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastFlush = 0;
  /** Until a reply says otherwise (a new primary, say, may have watchers). */
  private watched = true;
  /** The coarse state the last batch carried. */
  private sentCoarse: Coarse | null = null;

  constructor(
    /** The guest now, if this host runs it. */
    private readonly guest: () => { primary: Primary; generation: number } | null,
    /** Resolves to whether anybody watches the stream now. */
    private readonly publish: (generation: number, events: StreamEvent[]) => Promise<boolean>,
    /** Its timer keeps the object active, as any pending timer does (meter.ts). */
    private readonly timers: Pick<Meter, "setTimeout" | "clearTimeout">,
  ) {}

  synced(generation: number, s: SyncStats, pauseMs: number, flightMs: number): void {
    if (!this.watched) return;
    this.events.push(event({ type: "sync", generation, seq: s.seq, full: s.full, pages: s.pages, sent: s.sentPages, bytes: s.sentBytes, dirtyBytes: s.dirtyBytes, deltaSaved: s.deltaSaved, pauseMs, flightMs }));
  }

  /** A dashboard joined (the switch says so): send what the guest is doing now, and everything from now on. */
  watch(): void {
    this.watched = true;
    this.changed();
  }

  /** Something a dashboard would show has changed: send a batch soon (unwatched: only if the coarse state changed). */
  changed(): void {
    if (this.timer || !this.due()) return;
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, BATCH_EVERY_MS);
  }

  /** Called by the pump between slices. */
  flushIfDue(): void {
    if (this.events.length === 0 && !this.timer) return;
    if (!this.due()) return;
    if (Date.now() - this.lastFlush < BATCH_EVERY_MS) return;
    this.timers.clearTimeout(this.timer);
    this.timer = null;
    void this.flush();
  }

  private due(): boolean {
    const g = this.guest();
    return g !== null && (this.watched || coarse(g.primary.runner.state) !== this.sentCoarse);
  }

  private async flush(): Promise<void> {
    const g = this.guest();
    if (!g) return;
    this.lastFlush = Date.now();
    const batch = this.events.splice(0, MAX_BATCH);
    const r = g.primary.runner;
    batch.push(event({ type: "guest", generation: g.generation, state: r.state, pc: r.machine.cpu.pc, instructions: r.machine.cpu.instret, devices: r.devices(), dirty: Array.from(r.memory.dirtyPages().subarray(0, MAX_LISTED_PAGES)) }));
    if (this.events.length > 0) this.changed();
    try {
      this.watched = await this.publish(g.generation, batch);
      this.sentCoarse = coarse(r.state);
    } catch {
      // Not delivered: the coarse state goes again with the next batch; watched or not, its reply says.
    }
    if (!this.watched) this.events = [];
  }
}

type Coarse = "running" | "halted" | "crashed";

function coarse(state: string): Coarse {
  return state === "halted" || state === "crashed" ? state : "running";
}
