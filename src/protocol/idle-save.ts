/**
 * Idle saves: a guest that stops running (waiting, paused, halted, crashed,
 * at a breakpoint) is saved by its primary to its own storage once it has
 * stayed so for IDLE_SAVE_MS, so that the host's eviction — the runtime
 * drops idle objects, and their RAM with them — costs nothing: the restarted
 * host finds the save and resumes the guest in place (same generation, no
 * failover), exactly where it was.
 *
 * What is saved: the pages changed since the last save (all of them the
 * first time), the machine (CPU, event channels, bindings), the fault of a
 * crashed guest, the runner's counters, and packets waiting for a buffer.
 * The disk needs nothing: the primary's live disk is already in storage.
 *
 * A save describes the guest only until it changes: anything that may
 * change it (a slice, a step, a packet, an event, pause or resume) first
 * invalidates the save, so a host that dies while the guest runs finds none
 * and is lost as before — in mode none that loses the guest; protected, the
 * witness fails over. A save is never a way back to an older state.
 *
 * Protected modes save only once the secondary holds the guest's memory and
 * disk exactly (kemari takes a checkpoint of the idle guest for it; remus's
 * epochs get there by themselves): then the restored primary and its
 * secondary agree on every page, and replication carries on from the same
 * sequence number with no full checkpoint.
 */
import { captureMachine, machineFromJson, machineToJson, restoreMachine } from "../kemari/state.ts";
import { isZero, PAGE_SIZE } from "../guest/memory.ts";
import { decodeBase64, encodeBase64 } from "../image/load.ts";
import { mutations } from "./mutations.ts";
import type { HostIO, IdleMeta } from "./ports.ts";
import type { Primary } from "./primary.ts";

/** How long a guest stays idle before it is saved (ms). */
export const IDLE_SAVE_MS = 1000;
/** How often an idle guest not yet ready to be saved is looked at again (ms). */
const LATER_MS = 200;

export class IdleSaver {
  /** The store holds the guest as it is now. */
  private valid: boolean;
  /** The store's pages are this guest's as of the last save: the next one writes only what changed. */
  private based: boolean;
  private timer = false;
  /** When the guest last changed (or might have): it is saved once it has stayed unchanged for IDLE_SAVE_MS. */
  private changedAt: number;
  /** Saves made (for tests and status). */
  saves = 0;

  constructor(
    private readonly io: HostIO,
    private readonly primary: Primary,
    readonly generation: number,
    /** This saver's primary is still the host's guest. */
    private readonly active: () => boolean,
    restored = false,
  ) {
    this.valid = restored;
    this.based = restored;
    this.changedAt = io.clock.now();
    primary.runner.changing = () => this.changing();
  }

  /** The guest is about to change: the save no longer describes it. */
  changing(): void {
    this.changedAt = this.io.clock.now();
    if (!this.valid || mutations.staleIdleSave) return;
    this.valid = false;
    this.io.store.idle.invalidate();
    // Whatever changed it (a packet it cannot take yet, an epoch's checkpoint of an idle guest), look again.
    this.soon();
  }

  get saved(): boolean {
    return this.valid;
  }

  /** The store was cleared under us (an injected crash takes the save): the next save writes every page. */
  forget(): void {
    this.valid = false;
    this.based = false;
    this.soon();
  }

  /** The guest may have gone idle: look again once it has been unchanged for IDLE_SAVE_MS (one look pending at a time). */
  soon(atLeastMs = 1): void {
    if (this.timer || this.valid || !this.active()) return;
    this.timer = true;
    const wait = Math.max(atLeastMs, this.changedAt + IDLE_SAVE_MS - this.io.clock.now());
    void this.io.clock
      .sleep(wait)
      .then(async () => {
        this.timer = false;
        // Running: its next stop looks again (the pump's end calls `soon`).
        if (this.primary.machine.runnable) return;
        // It changed meanwhile (a busy guest between two requests): look again when it has been still long enough.
        if (this.io.clock.now() - this.changedAt < IDLE_SAVE_MS) return this.soon();
        // Not ready (outputs or a checkpoint on their way, a secondary being replaced): look again in a while.
        if ((await this.saveIfIdle()) === "later") this.soon(LATER_MS);
      })
      .catch(() => {
        // Fenced or stopped meanwhile (soon() then does nothing), or the store refused the write: try again later.
        this.timer = false;
        this.soon(LATER_MS);
      });
  }

  /**
   * Save the guest if it is idle. "later": idle, but not ready to be saved
   * (outputs or a checkpoint still on their way); "not-idle": it runs (its
   * next stop looks again).
   */
  async saveIfIdle(): Promise<"saved" | "later" | "not-idle"> {
    const p = this.primary;
    const m = p.machine;
    if (!this.active() || m.runnable) return "not-idle";
    if (this.valid) return "saved";
    if (p.outputsInFlight > 0) return "later";
    if (p.protection && !mutations.idleSaveAhead) {
      if (!p.caughtUp()) {
        if (p.outputsInFlight > 0 || p.epochsInFlight > 0 || !p.protection.ready) return "later";
        await p.checkpointIdle();
      }
      if (!p.caughtUp()) return "later";
    }
    return p.runner.exclusive(async () => {
      // Looked at again with the guest to ourselves: a packet, a resume or a checkpoint may have come meanwhile.
      if (!this.active() || m.runnable) return "not-idle";
      if (p.outputsInFlight > 0 || (p.protection && !p.caughtUp() && !mutations.idleSaveAhead)) return "later";
      this.write();
      return "saved";
    });
  }

  private write(): void {
    const p = this.primary;
    const mem = p.machine.memory;
    // Mode none: the dirty set serves only these saves; protected, it is replication's (and empty: caught up).
    if (!p.protection) mem.clearDirty();
    const changed = mem.takeUnsaved();
    const full = !this.based;
    const pages: [number, Uint8Array | null][] = [];
    if (full) {
      for (let i = 0; i < mem.pages; i++) if (!isZero(mem.page(i))) pages.push([i, mem.page(i)]);
    } else {
      for (const i of changed) pages.push([i, isZero(mem.page(i)) ? null : mem.page(i)]);
    }
    try {
      this.io.store.idle.save(full, pages, this.meta());
    } catch (e) {
      // Rolled back, and the changed pages are already off the list: the next save writes them all.
      this.based = false;
      throw e;
    }
    this.valid = true;
    this.based = true;
    this.saves++;
  }

  private meta(): IdleMeta {
    const p = this.primary;
    const r = p.protection?.replicator;
    return {
      generation: this.generation,
      machine: machineToJson(captureMachine(p.machine)),
      crash: p.machine.crash,
      counters: { ...p.runner.counters },
      rx: p.runner.queuedInbound().map(encodeBase64),
      secondary: p.secondary,
      seq: r?.seq ?? 0,
    };
  }
}

/** The guest's memory as saved: pages not in the save are zero. */
export function savedMemory(pages: number, saved: Iterable<[number, Uint8Array]>): Uint8Array {
  const bytes = new Uint8Array(pages * PAGE_SIZE);
  for (const [i, data] of saved) if (i < pages) bytes.set(data.subarray(0, PAGE_SIZE), i * PAGE_SIZE);
  return bytes;
}

/** Put a saved guest into a new primary built on `memory` (savedMemory's). */
export function resumeSaved(p: Primary, meta: IdleMeta, memory: Uint8Array): void {
  const m = p.machine;
  restoreMachine(m, machineFromJson(meta.machine), memory);
  m.crash = meta.crash;
  Object.assign(p.runner.counters, meta.counters);
  p.runner.restoreInbound(meta.rx.map(decodeBase64));
  p.runner.attachAll();
  // Nothing changed since the save: the next one writes only what changes from here.
  m.memory.takeUnsaved();
  p.fromAcknowledgedState();
  if (p.protection && meta.secondary) p.protection.resume(meta.secondary, meta.seq);
}
