/** The status of a guest as the API reports it. */
import type { GuestState } from "../guest/abi.ts";
import type { Fault } from "../guest/cpu.ts";
import type { SyncStats } from "../kemari/replicator.ts";
import type { GuestConfig, HeartbeatConfig, KemariOptions, Latency } from "./guest-config.ts";
import type { DeviceStatus, RunnerCounters } from "./runner.ts";

export type Protection = "protected" | "unprotected" | "failing-over" | "reprotecting";

/** What the primary says about the guest it runs. */
export interface HostStatus {
  state: GuestState;
  exitCode: number | null;
  crash: Fault | null;
  pc: number;
  instructions: number;
  pending: number;
  dirtyPages: number;
  rxDropped: number;
  counters: RunnerCounters;
  devices: DeviceStatus[];
  /** Kemari synchronisation, in mode kemari. */
  sync: SyncSummary | null;
  /** Outputs not yet at the switch (and, pipelined, events waiting for their checkpoint). */
  outputsInFlight: number;
  /** The idle guest is saved in its host's storage: an eviction of the host now costs nothing (src/protocol/idle-save.ts). */
  idleSaved: boolean;
}

export interface SyncSummary {
  /** Sequence number of the last checkpoint the secondary acknowledged. */
  seq: number;
  syncs: number;
  pagesSent: number;
  bytesDirtied: number;
  bytesSent: number;
  /** Bytes delta compression saved against sending changed pages whole. */
  deltaSaved: number;
  /** The guest's pause at the last sync, and in all syncs, milliseconds (pipelined: taking the checkpoint). */
  lastPauseMs: number;
  /** From taking the last checkpoint until it was acknowledged (stop-and-wait: the same as the pause). */
  lastFlightMs: number;
  totalPauseMs: number;
  /** Mode remus: outputs held back until their epoch's checkpoint is acknowledged. */
  heldOutputs: number;
  /** The checkpoint sent and not yet acknowledged, while the guest runs on (pipelined kemari, remus). */
  inFlight: InFlight | null;
  /** Mode remus: the current epoch has changes no checkpoint has carried yet. */
  epochOpen: boolean;
  last: SyncStats | null;
}

export interface LinkStatus {
  from: "primary" | "secondary";
  fromRegion: string;
  to: "secondary" | "witness";
  toRegion: string;
  /** The modelled round trip (0: none added). */
  rttMs: number;
  /** The modelled bandwidth, megabits per second (null: not limited). */
  mbps: number | null;
}

export interface InFlight {
  seq: number;
  bytes: number;
  pages: number;
  /** How long it has been on its way, milliseconds. */
  sinceMs: number;
}

export interface HostPlace {
  name: string;
  region: string | null;
}

export interface FailoverRecord {
  generation: number;
  reason: string;
  from: HostPlace;
  to: HostPlace;
  /** When the witness decided (epoch ms). */
  at: number;
  /** From the decision until the guest ran again on the new primary. */
  takeoverMs: number;
}

export interface GuestStatus extends HostStatus {
  id: string;
  name: string;
  mode: GuestConfig["mode"];
  memoryPages: number;
  diskSectors: number;
  createdAt: number;
  generation: number;
  protection: Protection;
  hosts: { primary: HostPlace; secondary: HostPlace | null };
  heartbeat: HeartbeatConfig | null;
  /** Mode remus: the epoch between checkpoints. */
  epochMs: number | null;
  /** Mode kemari: the event tap's options. */
  kemari: KemariOptions | null;
  latency: Latency;
  /** The links between the guest's objects, as the link model has them (rttMs 0: within a region, or the model is off). */
  links: LinkStatus[];
  failovers: FailoverRecord[];
  /** Outputs the switch refused because a superseded primary sent them. */
  fencedReleases: number;
}

/** What is left to say of a guest whose host lost it (or that no copy survived). */
export function lostHostStatus(reason: string): HostStatus {
  return {
    state: "crashed",
    exitCode: null,
    crash: { reason, pc: 0 },
    pc: 0,
    instructions: 0,
    pending: 0,
    dirtyPages: 0,
    rxDropped: 0,
    counters: { events: 0, outputs: 0, consoleBytes: 0, packetsOut: 0, packetsIn: 0 },
    devices: [],
    sync: null,
    outputsInFlight: 0,
    idleSaved: false,
  };
}
