/** Numbers fixed by the guest ABI v1 (docs/guest-abi.md). Add, never renumber. */

export const Hypercall = {
  HALT: 0,
  NOTIFY: 1,
  WAIT: 2,
  CONNECT: 3,
  POLL: 4,
  TIME: 5,
  RANDOM: 6,
} as const;

export const Errno = {
  EIO: -5,
  EBUSY: -16,
  EINVAL: -22,
  ENOSYS: -38,
} as const;

export const DeviceKind = {
  CONSOLE: 0,
  NET_TX: 1,
  NET_RX: 2,
  BLK: 3,
} as const;
export type DeviceKind = (typeof DeviceKind)[keyof typeof DeviceKind];

export const PORTS = 32;
export const SECTOR_SIZE = 512;
export const DEFAULT_DISK_SECTORS = 2048;
export const MAX_DISK_SECTORS = 131072; // 64 MiB

/** Registers by ABI name, for readability at the hypercall boundary. */
export const Reg = { ra: 1, sp: 2, a0: 10, a1: 11, a2: 12, a7: 17 } as const;

export type GuestState = "running" | "waiting" | "paused" | "breakpoint" | "halted" | "crashed";
