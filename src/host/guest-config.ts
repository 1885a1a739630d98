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
  /** Where the first primary and secondary are placed (mode kemari). */
  regions: { primary: Region; secondary: Region };
  heartbeat: HeartbeatConfig;
  /** Mode remus: the epoch between checkpoints. */
  epochMs: number;
}

/** Remus's default epoch, as in the Remus paper. */
export const DEFAULT_EPOCH_MS = 25;

export const DEFAULT_HEARTBEAT: HeartbeatConfig = { intervalMs: 200, timeoutMs: 2000 };

/** Numbers that shape how a host drives its guest. */
export const SLICE_INSTRUCTIONS = 1_000_000;

