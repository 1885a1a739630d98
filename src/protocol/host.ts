/**
 * A host: one "physical machine" for a guest, as plain protocol code. The
 * GuestHost Durable Object adapts it to RPC, SQLite and alarms; the
 * simulator drives it with seeded ports. Its role is an explicit state
 * machine (TigerBeetle's replica `Status`), each transition named and
 * checking its precondition:
 *
 *   unassigned ─start──▶ primary ─fence──▶ fenced
 *   unassigned ─init───▶ secondary ─promote─▶ primary
 *   primary ──restart──▶ lost ─promote (from a kept copy)─▶ primary
 *   secondary / lost ─retire─▶ fenced
 *
 * `lost` is a primary whose RAM — and the guest in it — went with a restart.
 * A promoted host keeps its acknowledged copy (durably) until a new
 * secondary holds a whole one: until then it is the only acknowledged copy,
 * and a restart of every host must still be able to resume from it.
 */
import { GuestError } from "../host/errors.ts";
import { MIN_SLICE_MS, SLICE_MS, SliceBudget } from "../host/slice-budget.ts";
import { isProtected, withDefaults, witnessRegion, type GuestConfig } from "../host/guest-config.ts";
import type { Region } from "../kemari/placement.ts";
import { LinkTable, overLink, type Link } from "./link-model.ts";
import { lostHostStatus, type HostPlace, type HostStatus } from "../host/status.ts";
import type { Image } from "../image/image.ts";
import { Fenced } from "../kemari/protection.ts";
import type { SyncReply } from "../kemari/replicator.ts";
import { restoreMachine } from "../kemari/state.ts";
import { mutations } from "./mutations.ts";
import type { HoldReply, HostIO, HostMeta, IdleMeta, PingReply } from "./ports.ts";
import { Primary } from "./primary.ts";
import { Secondary } from "./secondary.ts";
import { IdleSaver, resumeSaved, savedMemory } from "./idle-save.ts";

/** How late a modelled arrival may be delivered (ms): a few per cent of an inter-region round trip. */
const ARRIVAL_SLACK_MS = 2;

export type Role =
  | { kind: "unassigned" }
  | { kind: "primary"; generation: number; primary: Primary; kept: Secondary | null }
  | { kind: "lost"; generation: number }
  | { kind: "secondary"; generation: number; secondary: Secondary }
  /** `frozen`: the guest as it stood when fenced (shown, never run again). */
  | { kind: "fenced"; generation: number; reason: string; frozen: Primary | null };

export const LOST = "the host restarted and lost the guest's memory";

/** A runnable guest's pump is scheduled with a durable alarm as its backstop, this far ahead (ms). */
export const BACKSTOP_MS = 1000;
/**
 * Once the pump is known to run, the backstop checks on it this rarely: each
 * alarm is a billed request, and a running pump needs none (it stops only
 * when the guest stops running). A primary that restarted is noticed by its
 * pending alarm, or sooner by the witness: its check-ins stop.
 */
export const RUNNING_BACKSTOP_MS = 10_000;

export class Host {
  private meta: HostMeta | null;
  role: Role;
  private pumping = false;
  /** Saves the guest while it is idle, so an eviction of this host costs nothing (src/protocol/idle-save.ts). */
  private saver: IdleSaver | null = null;
  /** How long the next slice runs (its rate is learnt across runs of the guest). */
  private readonly budget = new SliceBudget();

  private readonly io: HostIO;
  private readonly links: LinkTable;

  constructor(io: HostIO) {
    // The link model sits on the ports: the protocol's calls to the witness and the secondary are carried over it.
    this.links = new LinkTable(io.clock);
    this.io = {
      ...io,
      witness: overLink(io.witness, () => this.linkTo(this.config && witnessRegion(this.config))),
      peer: (place) => overLink(io.peer(place), () => this.linkTo(place.region as Region | null)),
    };
    const stored = io.store.loadMeta();
    this.meta = stored && { ...stored, config: withDefaults(stored.config) };
    this.role = this.roleAfterRestart();
  }

  /** What a (re)started host is: its storage says; its RAM is empty. */
  private roleAfterRestart(): Role {
    const m = this.meta;
    if (!m) return { kind: "unassigned" };
    if (m.role === "secondary") return { kind: "secondary", generation: m.generation, secondary: new Secondary(this.io.store, m.generation) };
    if (m.role === "fenced") return { kind: "fenced", generation: m.generation, reason: "fenced before a restart", frozen: null };
    const saved = this.io.store.idle.load();
    if (saved && saved.meta.generation === m.generation) return this.resumeSaved(m, saved.meta, saved.pages);
    return { kind: "lost", generation: m.generation };
  }

  /** restart → primary, in place: the guest was idle and saved, and goes on from its save (same generation, no failover). */
  private resumeSaved(m: HostMeta, meta: IdleMeta, pages: Iterable<[number, Uint8Array]>): Role {
    const memory = savedMemory(m.config.memoryPages, pages);
    const p = this.newPrimary(m.config, m.generation, memory);
    resumeSaved(p, meta, memory);
    this.saver = this.newSaver(p, m.generation, true);
    return { kind: "primary", generation: m.generation, primary: p, kept: null };
  }

  private newSaver(p: Primary, generation: number, restored = false): IdleSaver {
    return new IdleSaver(this.io, p, generation, () => this.role.kind === "primary" && this.role.primary === p, restored);
  }

  /** The idle save was cleared under us (an injected crash takes it): the next save writes everything. */
  idleSaveCleared(): void {
    this.saver?.forget();
  }

  /** The guest's idle save is current (tests; the dashboard). */
  get idleSaved(): boolean {
    return this.saver?.saved ?? false;
  }

  get config(): GuestConfig | null {
    return this.meta?.config ?? null;
  }

  /** The modelled link from this host to a party in `region` (null: none, or the model is off). */
  private linkTo(region: Region | null): Link | null {
    const m = this.meta;
    if (!m || m.config.latency === "none") return null;
    return this.links.link(m.config.latency, (m.self.region as Region | null) ?? m.config.regions.primary, region);
  }

  private save(meta: HostMeta): void {
    this.meta = meta;
    this.io.store.saveMeta(meta);
  }

  // ---- Transitions ----

  /** unassigned → primary: a new guest, loaded from its image and (protected modes) fully checkpointed before it runs. */
  async start(config: GuestConfig, image: Image, switchName: string, self: HostPlace, secondary: HostPlace | null, paused: boolean): Promise<HostStatus> {
    if (this.role.kind !== "unassigned") throw new GuestError("conflict", `host already serves guest ${this.meta?.config.id}`);
    this.save({ config, switchName, self, role: "primary", generation: 0 });
    const p = this.newPrimary(config, 0);
    p.runner.load(image);
    if (paused) p.machine.pause();
    this.role = { kind: "primary", generation: 0, primary: p, kept: null };
    this.saver = this.newSaver(p, 0);
    if (secondary && p.protection) {
      const protection = p.protection;
      protection.use(secondary);
      await p.runner.exclusive(() => protection.replicate(async () => {}));
    }
    this.io.schedule();
    this.saver.soon();
    return this.status();
  }

  /** → secondary of `generation`, forgetting anything held before. */
  init(config: GuestConfig, switchName: string, self: HostPlace, generation: number): void {
    if (this.role.kind === "primary") throw new GuestError("conflict", "host runs a guest");
    this.io.store.clearAll();
    this.save({ config, switchName, self, role: "secondary", generation });
    this.role = { kind: "secondary", generation, secondary: new Secondary(this.io.store, generation) };
  }

  /**
   * secondary (or lost, from the copy it kept) → primary of `generation`:
   * restore the guest from the last acknowledged checkpoint, let the
   * backends rebuild their cursors from the rings (processing outstanding
   * requests again), release what the checkpoint held back (Remus), and run;
   * re-protection starts at once. Idempotent: a repeated promote (the
   * witness restarted, or lost our reply) answers as the first did.
   */
  async promote(generation: number, paused: boolean): Promise<{ takeoverMs: number }> {
    const t0 = this.io.clock.now();
    const role = this.role;
    if (role.kind === "primary" && role.generation === generation) return { takeoverMs: 0 };
    if (role.kind !== "secondary" && role.kind !== "lost") throw new GuestError("conflict", `this host is ${role.kind}, not a secondary`);
    if (generation <= role.generation) throw new GuestError("conflict", `generation ${generation} is not newer than this host's ${role.generation}`);
    const kept = role.kind === "secondary" ? role.secondary : this.keptCopy();
    const copy = kept?.copy;
    if (!kept || !copy?.meta || !copy.memory) throw new GuestError("lost", "this host holds no whole checkpoint");
    const meta = this.meta!;
    this.io.store.replica.adoptDisk();
    this.save({ ...meta, role: "primary", generation });
    // The copy's memory becomes the guest's (no copy of up to 64 MiB).
    const p = this.newPrimary(meta.config, generation, copy.memory);
    restoreMachine(p.machine, copy.meta.machine, copy.memory);
    p.fromAcknowledgedState();
    // Paused or not is the operator's say (kept by the witness), not the checkpoint's.
    if (paused) p.machine.pause();
    else p.machine.resume();
    this.role = { kind: "primary", generation, primary: p, kept };
    this.saver = this.newSaver(p, generation);
    // The checkpoint carried outputs its primary may have died before the witness had
    // them (remus: the epoch's; both: those on their way). They go first, in order (the
    // switch keeps each identity once); then the backends pick up outstanding requests.
    const held = copy.outputs;
    await p.runner.exclusive(async () => {
      p.outputs.push(held);
      await p.runner.reattach();
    });
    this.io.schedule();
    this.saver.soon();
    const takeoverMs = this.io.clock.now() - t0;
    // Re-protection runs on while the guest does: its next event waits for it.
    if (p.protection) {
      const protection = p.protection;
      void p.runner.exclusive(() => protection.replicate(async () => {})).catch(() => undefined);
    }
    return { takeoverMs };
  }

  /** A copy this (lost) host kept from before its promotion, if re-protection never completed. */
  private keptCopy(): Secondary | null {
    const saved = this.io.store.replica.load();
    return saved ? new Secondary(this.io.store, saved.meta.generation) : null;
  }

  /** primary → fenced: the witness moved the guest away; stop for good and release nothing. */
  private fence(reason: string): void {
    const role = this.role;
    if (role.kind === "fenced" || role.kind === "unassigned") return;
    if (role.kind === "primary") {
      role.primary.machine.pause();
      if (role.primary.protection) role.primary.protection.replicator = null;
    }
    this.save({ ...this.meta!, role: "fenced" });
    this.role = { kind: "fenced", generation: role.generation, reason, frozen: role.kind === "primary" ? role.primary : null };
  }

  /** The witness has moved the guest away from this host. */
  retire(generation: number): boolean {
    const role = this.role;
    if (role.kind !== "fenced" && role.kind !== "unassigned" && role.generation < generation) this.fence(`generation ${generation} runs elsewhere`);
    return true;
  }

  private newPrimary(config: GuestConfig, generation: number, memory?: Uint8Array): Primary {
    return new Primary(
      this.io,
      config,
      generation,
      this.io.store.disk(config.diskSectors),
      {
        isPrimary: () => this.role.kind === "primary" && this.role.generation === generation,
        fence: (reason) => this.fence(reason),
        connect: (place) => {
          const peer = this.io.peer(place);
          return {
            // A fenced host sends nothing more: a checkpoint taken or sent on after the fence would still
            // reach a secondary of its generation that is being promoted (the witness cannot reach it yet),
            // and move the copy the takeover starts from to a state no primary captured.
            send: (frame) => {
              const role = this.role;
              if (!mutations.fencedPrimarySends && !(role.kind === "primary" && role.generation === generation)) {
                return Promise.reject(new Fenced("this host was fenced: it sends no checkpoint"));
              }
              return peer.receive(frame);
            },
            pace: () => this.io.turn(),
            diskWrite: (g, s, d) => peer.diskWrite(g, s, d),
          };
        },
        reprotected: () => this.dropKeptCopy(generation),
        wake: () => {
          // A running pump sees the guest runnable at its next turn: a kick would be a timer (and an alarm read) for nothing.
          if (this.pumping) return;
          this.io.schedule();
          void this.pump();
        },
      },
      memory,
    );
  }

  /** A new secondary holds a whole copy: the one kept since the promotion is no longer the only one. */
  private dropKeptCopy(generation: number): void {
    const role = this.role;
    if (role.kind !== "primary" || role.generation !== generation || !role.kept) return;
    this.role = { ...role, kept: null };
    this.io.store.replica.clear();
  }

  // ---- The secondary's side ----

  receive(frame: Uint8Array): SyncReply {
    const role = this.role;
    if (role.kind === "secondary") return role.secondary.receive(frame, this.io.faults);
    // The bug the mutation brings back: a promoted host still applies frames to the copy its guest now runs on.
    if (mutations.acceptOlderGeneration && role.kind === "primary" && role.kept) return role.kept.receive(frame, this.io.faults);
    return { ok: false, code: role.kind === "primary" ? "superseded" : "not-secondary", reason: `this host is ${role.kind}` };
  }

  diskWrite(generation: number, sector: number, data: Uint8Array): SyncReply {
    const role = this.role;
    if (role.kind !== "secondary") return { ok: false, code: "superseded", reason: `this host is ${role.kind}` };
    return role.secondary.diskWrite(generation, sector, data);
  }

  /** What this host holds that a takeover could start from. */
  holds(): HoldReply {
    const role = this.role;
    const copy = role.kind === "secondary" ? role.secondary.copy : role.kind === "lost" ? this.keptCopy()?.copy : role.kind === "primary" ? role.kept?.copy : null;
    return {
      role: this.meta?.role ?? null,
      generation: role.kind === "unassigned" ? 0 : role.generation,
      lost: role.kind === "lost",
      whole: !!copy?.meta,
      copyGeneration: copy?.meta?.generation ?? 0,
      seq: copy?.seq ?? 0,
      instructions: copy?.meta?.machine.instret ?? null,
    };
  }

  // ---- The witness's questions ----

  ping(generation: number): PingReply {
    const role = this.role;
    if (role.kind === "lost" && role.generation === generation) return { ok: false, code: "lost", reason: LOST };
    if (role.kind !== "primary" || role.generation !== generation) return { ok: false, code: "not-primary", reason: `this host is ${role.kind}` };
    return { ok: true, state: role.primary.runner.state };
  }

  /** The durable backstop found this host restarted: tell the witness at once rather than wait for a heartbeat. */
  async reportLost(): Promise<void> {
    const role = this.role;
    if (role.kind === "lost" && this.meta && isProtected(this.meta.config.mode)) await this.io.witness.primaryLost(role.generation).catch(() => undefined);
  }

  // ---- Running the guest ----

  /** The running guest, or an error that says why there is none. */
  guest(): Primary {
    const role = this.role;
    if (role.kind === "primary") return role.primary;
    if (role.kind === "lost") throw new GuestError("lost", LOST);
    if (role.kind === "fenced") throw new GuestError("conflict", "this host was fenced: the guest runs elsewhere");
    throw new GuestError("not-found", "no guest on this host");
  }

  /** The pump is driving the guest (it may be between slices, the guest waiting for a moment). */
  get pumpRunning(): boolean {
    return this.pumping;
  }

  get runnable(): boolean {
    return this.role.kind === "primary" && this.role.primary.machine.runnable;
  }

  /** Run `fn` on the guest; a fence stops it for good (that is not an error of the request). */
  private async drive(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof Fenced)) throw e;
    }
  }

  /**
   * Drive the guest in bounded slices, yielding between them so requests
   * (status, pause, inbound packets, checkpoints) are served in between.
   */
  async pump(): Promise<void> {
    const role = this.role;
    if (role.kind !== "primary" || this.pumping) return;
    const p = role.primary;
    this.pumping = true;
    const budget = this.budget;
    budget.restart();
    try {
      while (p.machine.runnable && this.role.kind === "primary" && this.role.primary === p) {
        await this.drive(async () => {
          // Modelled messages due by now are delivered here, without waiting for the event loop to go idle.
          this.links.arrivals.release(this.io.clock.now());
          const ms = this.sliceMs();
          const slice = this.io.sliceInstructions ?? budget.next(p.machine.cpu.instret, this.io.clock.now(), ms);
          // A crash armed for an instruction count (fault injection): the slice stops exactly there.
          const left = this.io.faults.instructionsLeft?.(p.machine.cpu.instret) ?? Infinity;
          await p.runner.runSlice(Math.min(slice, left));
          this.io.faults.ran?.(p.machine.cpu.instret);
          budget.ran(p.machine.cpu.instret, this.io.clock.now());
          this.io.observer?.changed?.();
          if (p.epochDue()) await p.commitEpoch();
          else p.epochSoon();
          // Not awaited: the guest runs on while the check-in crosses (primary.ts, checkInDue).
          const checkIn = p.checkInDue()?.then((superseded) => {
            if (superseded && this.role.kind === "primary" && this.role.primary === p) this.fence(superseded);
          });
          if (mutations.checkInHoldsGuest) await checkIn;
        });
        this.links.arrivals.release(this.io.clock.now());
        await this.io.yieldToRequests();
      }
    } finally {
      this.pumping = false;
    }
    this.saver?.soon();
  }

  /**
   * How long the next slice may run: SLICE_MS, or less when a modelled message
   * arrives sooner — it is delivered between slices (or by a timer, which runs
   * only once the event loop goes idle), so a slice that ran far past it would
   * stretch the modelled link.
   */
  private sliceMs(): number {
    const next = this.links.arrivals.next();
    if (next === null) return SLICE_MS;
    // A little past it: arrivals close together are delivered between the same two slices.
    return Math.min(SLICE_MS, Math.max(MIN_SLICE_MS, next - this.io.clock.now() + ARRIVAL_SLACK_MS));
  }

  /** Control changed the guest (pause, resume, step, a packet). */
  private touched(): void {
    this.saver?.soon();
    this.io.observer?.changed?.();
    if (this.role.kind === "primary") this.role.primary.epochSoon();
  }

  status(): HostStatus {
    const role = this.role;
    const p = role.kind === "primary" ? role.primary : role.kind === "fenced" ? role.frozen : null;
    if (!p) {
      if (!this.meta) throw new GuestError("not-found", "no guest on this host");
      // The object restarted: its RAM, and with it the guest, is gone. Protected, that is a
      // failure for the witness to act on; in mode none it is the end.
      if (role.kind === "lost" && isProtected(this.meta.config.mode)) throw new GuestError("lost", LOST);
      if (role.kind !== "lost") throw new GuestError("conflict", `this host is ${role.kind}`);
      return lostHostStatus(LOST);
    }
    const m = p.machine;
    const outputsInFlight = p.outputsInFlight;
    const ended = m.state === "halted" || m.state === "crashed";
    return {
      // A client that sees halted (or crashed) has seen all of the guest's output, and its end is in an acknowledged checkpoint.
      state: ended && outputsInFlight > 0 ? "running" : m.state,
      exitCode: ended && outputsInFlight > 0 ? null : m.exitCode,
      crash: ended && outputsInFlight > 0 ? null : m.crash,
      pc: m.cpu.pc,
      instructions: m.cpu.instret,
      pending: m.pending,
      dirtyPages: m.memory.dirtyPageCount,
      rxDropped: p.runner.rxDropped,
      counters: { ...p.runner.counters },
      devices: p.runner.devices(),
      sync: p.syncSummary(),
      outputsInFlight,
      idleSaved: role.kind === "primary" && this.idleSaved,
    };
  }

  async pause(): Promise<HostStatus> {
    const p = this.guest();
    await p.runner.exclusive(async () => {
      if (p.runner.state === "paused") return;
      if (p.runner.state !== "running" && p.runner.state !== "waiting") throw new GuestError("conflict", `cannot pause a guest that is ${p.runner.state}`);
      this.saver?.changing();
      p.machine.pause();
      // Events its last slice left for the next one's checkpoint (the tap coalescing) must not wait for a resume.
      await p.runner.settle();
    });
    this.touched();
    return this.status();
  }

  resume(): HostStatus {
    const p = this.guest();
    const state = p.runner.state;
    if (state !== "paused" && state !== "breakpoint" && state !== "running" && state !== "waiting") {
      throw new GuestError("conflict", `cannot resume a guest that is ${state}`);
    }
    if (state === "paused" || state === "breakpoint") {
      this.saver?.changing();
      p.machine.resume();
    }
    this.io.schedule();
    this.touched();
    return this.status();
  }

  /** Step a paused guest by up to `instructions` (at most a slice's worth): how many it executed. */
  async step(instructions: number): Promise<{ executed: number }> {
    const p = this.guest();
    if (p.runner.state !== "paused" && p.runner.state !== "breakpoint") {
      throw new GuestError("conflict", `only a paused guest can be stepped; this one is ${p.runner.state}`);
    }
    let executed = 0;
    await this.drive(async () => {
      // A crash armed for an instruction count stops a step there too.
      const left = this.io.faults.instructionsLeft?.(p.machine.cpu.instret) ?? Infinity;
      executed = await p.runner.step(Math.min(instructions, left));
      this.io.faults.ran?.(p.machine.cpu.instret);
    });
    this.touched();
    return { executed };
  }

  /** A packet for the guest: delivered once no slice or checkpoint holds the guest (not awaited: a long sync must not hold up the caller). */
  inbound(packet: Uint8Array): void {
    void this.guest().runner.deliverInbound(packet).then(() => {
      this.io.schedule();
      // A guest that cannot take it now (paused, no buffer posted) stays idle, and is saved again.
      this.saver?.soon();
    });
  }

  readMemory(addr: number, len: number): Uint8Array {
    const memory = this.guest().runner.memory;
    if (!memory.contains(addr, len)) {
      throw new GuestError("bad-request", `addr + len (${addr} + ${len}) is beyond the guest's ${memory.size} bytes of memory`, "addr");
    }
    return memory.read(addr, len);
  }

  readDisk(sector: number, count: number, view: "acked" | "live" = "acked"): Uint8Array {
    const p = this.guest();
    if (sector + count > p.disk.sectors) {
      throw new GuestError("bad-request", `sector + count (${sector} + ${count}) is beyond the disk's ${p.disk.sectors} sectors`, "sector");
    }
    return p.readDisk(sector, count, view);
  }

  /** Forget the guest and everything stored for it. */
  async destroy(): Promise<void> {
    const role = this.role;
    this.role = { kind: "unassigned" };
    this.meta = null;
    if (role.kind === "primary") await role.primary.runner.exclusive(async () => void role.primary.machine.pause());
    this.io.store.discard();
  }

  /** What a host holds, for tests and the dashboard. */
  replicaStatus(sectorsHeld: number): { role: string | null; generation: number; seq: number; pc: number | null; instructions: number | null; sectorsHeld: number } {
    const role = this.role;
    const copy = role.kind === "secondary" ? role.secondary.copy : null;
    return {
      role: this.meta?.role ?? null,
      generation: role.kind === "unassigned" ? 0 : role.generation,
      seq: copy?.seq ?? 0,
      pc: copy?.meta?.machine.pc ?? null,
      instructions: copy?.meta?.machine.instret ?? null,
      sectorsHeld,
    };
  }
}
