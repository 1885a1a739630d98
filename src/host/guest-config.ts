/** What a guest is made of, fixed at creation and stored by its switch and hosts. */
import type { Region } from "../kemari/placement.ts";

export type Mode = "none" | "kemari" | "remus";

/** Modes that keep a secondary (and so have failover, fencing, heartbeats). */
export function isProtected(mode: Mode): boolean {
  return mode !== "none";
}

export interface HeartbeatConfig {
  /** How often the switch (the witness) pings the primary. */
  intervalMs: number;
  /** A primary silent this long is declared failed. */
  timeoutMs: number;
}

export interface GuestConfig {
  id: string;
  name: string;
  mode: Mode;
  memoryPages: number;
  diskSectors: number;
  createdAt: number;
  /** Where the first primary and secondary are placed, and the switch (the witness; default: the primary's region). */
  regions: { primary: Region; secondary: Region; witness?: Region };
  /** The link model between this guest's objects in different regions (src/protocol/link-model.ts). */
  latency: Latency;
  /** Mode kemari: when the event tap synchronises, and whether the guest runs on while a checkpoint is in flight. */
  kemari: KemariOptions;
  heartbeat: HeartbeatConfig;
  /** Mode remus: the epoch between checkpoints. */
  epochMs: number;
}

/**
 * The link model: "none" adds nothing; "by-region" the typical round trip
 * between the two objects' location hints; or a fixed round trip (and
 * bandwidth) between any two objects in different regions.
 */
export type Latency = "none" | "by-region" | { rttMs: number; mbps?: number };

export interface KemariOptions {
  /**
   * "outputs": a checkpoint precedes every event that leaves the guest's
   * replicated world (console, net-tx); block requests are replicated state
   * and ride with the next checkpoint. "every-event": Kemari v1.0, which
   * synchronised at storage events too (Xen 3.3 used shared storage).
   */
  syncOn: "outputs" | "every-event";
  /** true: the guest runs on while its checkpoint is in flight; false: v1.0's stop-and-wait. */
  pipeline: boolean;
}

export const DEFAULT_KEMARI: KemariOptions = { syncOn: "outputs", pipeline: true };

/** A config as stored by any version: fields added later read their defaults. */
export function withDefaults(stored: GuestConfig): GuestConfig {
  const c = stored as Partial<GuestConfig> & GuestConfig;
  return { ...c, latency: c.latency ?? "none", kemari: { ...DEFAULT_KEMARI, ...(c.kemari ?? {}) } };
}

/** The switch's region: its own hint, or the first primary's. */
export function witnessRegion(c: GuestConfig): Region {
  return c.regions.witness ?? c.regions.primary;
}

/** Remus's default epoch, as in the Remus paper. */
export const DEFAULT_EPOCH_MS = 25;

export const DEFAULT_HEARTBEAT: HeartbeatConfig = { intervalMs: 200, timeoutMs: 2000 };


