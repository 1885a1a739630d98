/** The status of a guest as the API reports it. */
import type { GuestState } from "../guest/abi.ts";
import type { Fault } from "../guest/cpu.ts";
import type { SyncStats } from "../kemari/replicator.ts";
import type { GuestConfig, HeartbeatConfig } from "./guest-config.ts";
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
  /** The guest's pause at the last sync, and in all syncs, milliseconds. */
  lastPauseMs: number;
  totalPauseMs: number;
  /** Mode remus: outputs held back until their epoch's checkpoint is acknowledged. */
  heldOutputs: number;
  /** Mode remus: the current epoch has changes no checkpoint has carried yet. */
  epochOpen: boolean;
  last: SyncStats | null;
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
  };
}
