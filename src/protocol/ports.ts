/**
 * The ports through which the protocol (src/protocol/) reaches the world.
 *
 * Every kind of I/O a host or the witness does comes in through one of
 * these, as TigerBeetle's replica takes its MessageBus, Storage and Time:
 * the Durable Objects (durable-objects/) supply real ones — RPC, SQLite,
 * alarms — and the simulator (src/sim/) supplies seeded ones, so the same
 * code runs in both. Nothing in src/protocol/ touches a Cloudflare API,
 * `Date.now()` or `setTimeout` directly.
 */
import type { Disk, Output } from "../devices/backend.ts";
import type { GuestConfig } from "../host/guest-config.ts";
import type { HostPlace, HostStatus } from "../host/status.ts";
import type { Image } from "../image/image.ts";
import type { SyncReply, SyncStats, SyncStep } from "../kemari/replicator.ts";
import type { ReplicaStore } from "../kemari/replica.ts";
import type { Outcome } from "../host/errors.ts";
import type { FaultWhen } from "../kemari/faults.ts";
import type { Fault } from "../guest/cpu.ts";
import type { RunnerCounters } from "../host/runner.ts";

/** Time, as the protocol sees it: virtual under the simulator. */
export interface Clock {
  now(): number;
  /**
   * Resolves after `ms`. Once `cancel` aborts, it never resolves and its timer
   * is gone: deployed, a pending timer keeps an object from hibernating, and
   * is billed as active time.
   */
  sleep(ms: number, cancel?: AbortSignal): Promise<void>;
}

/** A host's role as stored: a restarted host finds it here (its RAM, and any guest in it, is gone). */
export type StoredRole = "primary" | "secondary" | "fenced";

export interface HostMeta {
  config: GuestConfig;
  /** Name of the guest's switch: where outputs go, and the witness. */
  switchName: string;
  self: HostPlace;
  role: StoredRole;
  generation: number;
}

/** A host's disk replica: sectors never written read as zeros. */
export interface DiskStore extends Disk {
  /** Every written sector, ascending (for a full checkpoint). */
  entries(): Iterable<[number, Uint8Array]>;
}

/**
 * What a primary saves of an idle guest besides its pages (src/protocol/idle-save.ts):
 * enough to resume it in place after the host's restart.
 */
export interface IdleMeta {
  generation: number;
  /** The machine (machineToJson of its MachineState). */
  machine: unknown;
  crash: Fault | null;
  counters: RunnerCounters;
  /** Packets that arrived and wait for a net-rx buffer, base64. */
  rx: string[];
  /** Protected modes: the secondary, which holds checkpoint `seq` — this guest's memory and disk exactly. */
  secondary: HostPlace | null;
  seq: number;
}

/** A primary's save of its idle guest; `save` is all or nothing. */
export interface IdleStore {
  /** Pages changed since the last save (null: all zero now); `full`: they are all the pages there are. */
  save(full: boolean, pages: [number, Uint8Array | null][], meta: IdleMeta): void;
  /** The save, if it still describes the guest (none was made, or the guest has run since: null). */
  load(): { meta: IdleMeta; pages: Iterable<[number, Uint8Array]> } | null;
  /** The guest is about to change: the save no longer describes it (its pages stay, the base of the next). */
  invalidate(): void;
}

/** A host's durable storage. Everything else it holds is in RAM and lost on a restart. */
export interface HostStore {
  /** The primary's save of its guest while idle. */
  idle: IdleStore;
  loadMeta(): HostMeta | null;
  saveMeta(meta: HostMeta): void;
  /** The live disk of the guest this host runs (its primary's view). */
  disk(sectors: number): DiskStore;
  /** The acknowledged copy this host keeps as a secondary (memory, machine, disk, held outputs). */
  replica: ReplicaStore & {
    /** Forget the copy. */
    clear(): void;
    /** Make the copy's disk the live disk (a takeover). */
    adoptDisk(): void;
  };
  /** Forget everything (the host is used again: a new secondary). */
  clearAll(): void;
  /**
   * Forget the guest for good: this host is destroyed and never used again.
   * What says it holds a guest goes at once; the space its pages and sectors
   * took may be freed afterwards, a little at a time (the adapter's concern).
   */
  discard(): void;
}

export type SecondaryReply = { ok: true; secondary: HostPlace } | { ok: false; reason: string };
export type RecordReply = { ok: true } | { ok: false; reason: string };
export type CheckInReply = { ok: true } | { ok: false; generation: number; reason: string };

/** The guest's switch (the witness), as a host reaches it. Any call may throw: the link failed. */
export interface WitnessLink {
  record(generation: number, outputs: Output[]): Promise<RecordReply>;
  /** `failedHeldCopy`: the failed secondary acknowledged a checkpoint (it may hold the newest copy). */
  replaceSecondary(generation: number, failed: HostPlace | null, failedHeldCopy?: boolean): Promise<SecondaryReply>;
  secondaryReady(generation: number, secondary: HostPlace): Promise<void>;
  /** A restarted primary reports that its guest is gone. */
  primaryLost(generation: number): Promise<void>;
  /** Am I still the primary of `generation`? How a busy primary learns it was fenced. */
  checkIn(generation: number): Promise<CheckInReply>;
}

/** Another host, as a primary reaches its secondary. Any call may throw: the link failed. */
export interface PeerLink {
  receive(frame: Uint8Array): Promise<SyncReply>;
  /** Only under the mutation `mirrorDiskAhead` (src/protocol/mutations.ts): the old, wrong design. */
  diskWrite(generation: number, sector: number, data: Uint8Array): Promise<SyncReply>;
}

/** Where a named protocol step may crash the host (fault injection; the simulator's crash points). */
export interface StepFaults {
  /** Called at each step; may not return (the host died there). */
  at(step: SyncStep | "after-release"): void | Promise<void>;
  /** Split checkpoints into at least this many frames (so a mid-transfer crash has a middle). */
  minFrames(): number;
  /** The secondary is about to apply a checkpoint: a crash may be armed for the middle of it. */
  applying?(): void;
  /** The primary: instructions the guest may run before an armed crash (none armed: Infinity). */
  instructionsLeft?(instret: number): number;
  /** The primary's guest ran to `instret`: a crash armed for that count happens here (may not return). */
  ran?(instret: number): void;
}

/** What a host tells whoever watches it (the live stream); optional. */
export interface HostObserver {
  /** A checkpoint was acknowledged: the guest paused `pauseMs` for it; it took `flightMs` from being taken to its ack. */
  synced?(generation: number, stats: SyncStats, pauseMs: number, flightMs: number): void;
  changed?(): void;
  /** Checkpoint `seq` was taken: the guest's machine is exactly its state now (the simulator's checker). */
  captured?(generation: number, seq: number): void;
  /** A packet was written into the guest's net-rx buffer with ring index `index` (the simulator's checker). */
  received?(generation: number, index: number, packet: Uint8Array): void;
}

export interface HostIO {
  clock: Clock;
  store: HostStore;
  witness: WitnessLink;
  peer(place: HostPlace): PeerLink;
  faults: StepFaults;
  observer?: HostObserver;
  /** Make sure the pump runs soon (a timer, with a durable alarm as backstop). */
  schedule(): void;
  /** Hand the thread to queued requests between slices. */
  yieldToRequests(): Promise<void>;
  /** A timer turn, between a checkpoint's frames: where every object shares a thread, requests from outside get in only then. */
  turn(): Promise<void>;
  /** Instructions a slice runs at most (default SLICE_INSTRUCTIONS; the simulator's are smaller, each costing virtual time). */
  sliceInstructions?: number;
}

export type PingReply = { ok: true; state: string } | { ok: false; code: "lost" | "not-primary" | "unreachable"; reason: string };

/** What a host holds that a takeover could resume from. */
export interface HoldReply {
  role: StoredRole | null;
  /** The host's generation (its role's). */
  generation: number;
  /** A primary that restarted and lost its guest (a copy it kept is all it has). */
  lost: boolean;
  /** A whole acknowledged checkpoint is stored here: a takeover can start from it. */
  whole: boolean;
  /** Its generation and sequence number (0 when none). */
  copyGeneration: number;
  seq: number;
  instructions: number | null;
}

/** A host, as the witness reaches it. Any call may throw: the link failed. */
export interface HostLink {
  init(config: GuestConfig, switchName: string, self: HostPlace, generation: number): Promise<Outcome<void>>;
  start(config: GuestConfig, image: Image, switchName: string, self: HostPlace, secondary: HostPlace | null, paused: boolean): Promise<Outcome<HostStatus>>;
  promote(generation: number, paused: boolean): Promise<Outcome<{ takeoverMs: number }>>;
  holds(): Promise<HoldReply>;
  ping(generation: number): Promise<PingReply>;
  retire(generation: number): Promise<boolean>;
  fault(kind: "crash" | "partition" | "heal", at: FaultWhen): Promise<Outcome<void>>;
  destroy(): Promise<void>;
}
