/** The status of a guest as the API reports it. */
import type { GuestState } from "../guest/abi.ts";
import type { Fault } from "../guest/cpu.ts";
import type { GuestConfig } from "./guest-config.ts";
import type { DeviceStatus, RunnerCounters } from "./runner.ts";

export type Protection = "protected" | "unprotected" | "failing-over" | "reprotecting";

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
  hosts: { primary: { name: string; region: string | null } };
}
