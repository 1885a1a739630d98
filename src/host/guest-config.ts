/** What a guest is made of, fixed at creation and stored by its switch and hosts. */
export type Mode = "none";

export interface GuestConfig {
  id: string;
  name: string;
  mode: Mode;
  memoryPages: number;
  diskSectors: number;
  createdAt: number;
}

/** Numbers that shape how a host drives its guest. */
export const SLICE_INSTRUCTIONS = 1_000_000;
/** Slices one alarm runs before handing back to the scheduler (≈ 50–100 ms of CPU). */
export const SLICES_PER_ALARM = 16;
