/**
 * The checkpoint stream: what the primary sends the secondary at each event
 * (mode kemari) or each epoch (mode remus).
 *
 * Shaped like QEMU's migration stream, but whole-or-nothing: a checkpoint is
 * one or more frames (split so no message exceeds a size limit), the last of
 * which carries the CPU, event-channel and binding state and the COMMIT flag.
 * Every frame is versioned, numbered (sequence, part), stamped with the
 * generation of the primary that sent it, and closed by a CRC-32, so a torn or
 * corrupt transfer is recognised and refused before anything is applied.
 *
 *   header  magic "KMRI" · version u16 · flags u16 · seq u32 · generation u32
 *           part u32 · memoryPages u32 · diskSectors u32 · entries u32 · body u32
 *   machine (COMMIT frames only) regs[32] · pc · instret f64 · pending · state
 *           · exit code · bindings
 *   entries space u8 (page|sector|output) · encoding u8 · u16 reserved · index u32
 *           · length u32 · data
 *           page:   encoding raw|delta|zero, index the page number
 *           sector: encoding raw, index the sector number
 *           output: encoding the device (0 console, 1 net), index its ring index
 *   trailer crc32 of everything before it
 *
 * All integers little-endian.
 */
import { DeviceKind, PORTS, SECTOR_SIZE, type GuestState } from "../guest/abi.ts";
import type { Binding } from "../guest/machine.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import { crc32 } from "./crc32.ts";

export const CHECKPOINT_MAGIC = 0x49524d4b; // "KMRI"
export const CHECKPOINT_VERSION = 1;
export const HEADER_BYTES = 36;
/** Where each header field sits (little-endian): one table for encodeFrame, decodeFrame and peekFrame. */
const enum At {
  MAGIC = 0, // u32
  VERSION = 4, // u16
  FLAGS = 6, // u16
  SEQ = 8,
  GENERATION = 12,
  PART = 16,
  MEMORY_PAGES = 20,
  DISK_SECTORS = 24,
  ENTRIES = 28,
  BODY = 32, // bytes between the header and the trailer
}
const MACHINE_FIXED_BYTES = 32 * 4 + 4 + 8 + 4 + 4 + 4;
const BINDING_BYTES = 8;
export const ENTRY_HEADER_BYTES = 12;
export const TRAILER_BYTES = 4;

export const FLAG_FULL = 1;
export const FLAG_COMMIT = 2;

/**
 * What an entry is: a page of memory, a disk sector, or (Remus) an output the
 * checkpointed epoch produced and holds back — it is part of the state the
 * secondary must be able to release if it takes over. For an output, the
 * encoding byte names the device (0 console, 1 net) and the index is its ring
 * index, its identity.
 */
export const Space = { PAGE: 0, SECTOR: 1, OUTPUT: 2 } as const;
/** The largest output an entry may carry (a console write; packets are at most 4096 bytes). */
export const MAX_OUTPUT_BYTES = 64 * 1024;
export type Space = (typeof Space)[keyof typeof Space];
/** How an entry's bytes are encoded: whole, as a delta against the last sent version, or all zero. */
export const Enc = { RAW: 0, DELTA: 1, ZERO: 2 } as const;
export type Enc = (typeof Enc)[keyof typeof Enc];

const STATES: readonly GuestState[] = ["running", "waiting", "paused", "breakpoint", "halted", "crashed"];

/** The guest state besides memory: exactly what the machine needs to go on. */
export interface MachineState {
  regs: Int32Array;
  pc: number;
  instret: number;
  pending: number;
  state: GuestState;
  exitCode: number | null;
  bindings: Binding[];
}

export interface Entry {
  space: Space;
  index: number;
  enc: Enc;
  data: Uint8Array;
}

export interface Frame {
  seq: number;
  generation: number;
  part: number;
  /** A full checkpoint replaces the secondary's copy; an incremental one patches it. */
  full: boolean;
  memoryPages: number;
  diskSectors: number;
  /** Present exactly on the COMMIT (last) frame of a checkpoint. */
  machine: MachineState | null;
  entries: Entry[];
}

/** A frame that cannot be trusted; `reason` says why. Nothing of it may be applied. */
export class CheckpointError extends Error {
  constructor(readonly reason: string) {
    super(`checkpoint refused: ${reason}`);
    this.name = "CheckpointError";
  }
}

export function machineBytes(m: MachineState | null): number {
  return m ? MACHINE_FIXED_BYTES + m.bindings.length * BINDING_BYTES : 0;
}

export function frameBytes(f: Frame): number {
  let n = HEADER_BYTES + machineBytes(f.machine) + TRAILER_BYTES;
  for (const e of f.entries) n += ENTRY_HEADER_BYTES + e.data.length;
  return n;
}

export function encodeFrame(f: Frame): Uint8Array {
  const total = frameBytes(f);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(At.MAGIC, CHECKPOINT_MAGIC, true);
  v.setUint16(At.VERSION, CHECKPOINT_VERSION, true);
  v.setUint16(At.FLAGS, (f.full ? FLAG_FULL : 0) | (f.machine ? FLAG_COMMIT : 0), true);
  v.setUint32(At.SEQ, f.seq, true);
  v.setUint32(At.GENERATION, f.generation, true);
  v.setUint32(At.PART, f.part, true);
  v.setUint32(At.MEMORY_PAGES, f.memoryPages, true);
  v.setUint32(At.DISK_SECTORS, f.diskSectors, true);
  v.setUint32(At.ENTRIES, f.entries.length, true);
  v.setUint32(At.BODY, total - HEADER_BYTES - TRAILER_BYTES, true);
  let o = HEADER_BYTES;
  const m = f.machine;
  if (m) {
    for (let r = 0; r < 32; r++, o += 4) v.setInt32(o, r === 0 ? 0 : m.regs[r], true);
    v.setUint32(o, m.pc >>> 0, true);
    v.setFloat64(o + 4, m.instret, true);
    v.setUint32(o + 12, m.pending >>> 0, true);
    out[o + 16] = STATES.indexOf(m.state);
    out[o + 17] = m.exitCode === null ? 0 : 1;
    out[o + 18] = m.bindings.length;
    v.setInt32(o + 20, m.exitCode ?? 0, true);
    o += MACHINE_FIXED_BYTES - 32 * 4;
    for (const b of m.bindings) {
      out[o] = b.port;
      out[o + 1] = b.kind;
      v.setUint32(o + 4, b.ring >>> 0, true);
      o += BINDING_BYTES;
    }
  }
  for (const e of f.entries) {
    out[o] = e.space;
    out[o + 1] = e.enc;
    v.setUint32(o + 4, e.index, true);
    v.setUint32(o + 8, e.data.length, true);
    out.set(e.data, o + ENTRY_HEADER_BYTES);
    o += ENTRY_HEADER_BYTES + e.data.length;
  }
  v.setUint32(o, crc32(out, 0, o), true);
  return out;
}

/**
 * Whether a frame belongs to a full checkpoint, read from its header without
 * verifying the frame: for a carrier's decisions only (the test-only hold of
 * a re-protection, durable-objects/guest-host.ts). null: too short to have a
 * header.
 */
export function peekFrame(bytes: Uint8Array): { full: boolean } | null {
  if (bytes.length < HEADER_BYTES) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  return { full: (v.getUint16(At.FLAGS, true) & FLAG_FULL) !== 0 };
}

/**
 * Decode and verify a frame. Every field is checked against the frame's own
 * bounds before it is used: any input gives a Frame or a CheckpointError.
 */
export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length < HEADER_BYTES + TRAILER_BYTES) throw new CheckpointError(`frame of ${bytes.length} bytes is shorter than a header`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(At.MAGIC, true) !== CHECKPOINT_MAGIC) throw new CheckpointError("bad magic");
  const version = v.getUint16(At.VERSION, true);
  if (version !== CHECKPOINT_VERSION) throw new CheckpointError(`unsupported version ${version}`);
  const body = v.getUint32(At.BODY, true);
  if (HEADER_BYTES + body + TRAILER_BYTES !== bytes.length) {
    throw new CheckpointError(`torn frame: header says ${HEADER_BYTES + body + TRAILER_BYTES} bytes, got ${bytes.length}`);
  }
  const end = bytes.length - TRAILER_BYTES;
  if (crc32(bytes, 0, end) !== v.getUint32(end, true)) throw new CheckpointError("checksum mismatch");
  const flags = v.getUint16(At.FLAGS, true);
  if (flags & ~(FLAG_FULL | FLAG_COMMIT)) throw new CheckpointError(`unknown flags 0x${flags.toString(16)}`);
  const frame: Frame = {
    seq: v.getUint32(At.SEQ, true),
    generation: v.getUint32(At.GENERATION, true),
    part: v.getUint32(At.PART, true),
    full: (flags & FLAG_FULL) !== 0,
    memoryPages: v.getUint32(At.MEMORY_PAGES, true),
    diskSectors: v.getUint32(At.DISK_SECTORS, true),
    machine: null,
    entries: [],
  };
  let o = HEADER_BYTES;
  const need = (n: number, what: string) => {
    if (o + n > end) throw new CheckpointError(`${what} runs past the end of the frame`);
  };
  if (flags & FLAG_COMMIT) {
    need(MACHINE_FIXED_BYTES, "machine state");
    const regs = new Int32Array(32);
    for (let r = 0; r < 32; r++, o += 4) regs[r] = v.getInt32(o, true);
    if (regs[0] !== 0) throw new CheckpointError("x0 is not zero");
    const state = STATES[bytes[o + 16]];
    if (!state) throw new CheckpointError(`unknown guest state ${bytes[o + 16]}`);
    const instret = v.getFloat64(o + 4, true);
    if (!Number.isSafeInteger(instret) || instret < 0) throw new CheckpointError("bad instruction count");
    const count = bytes[o + 18];
    const m: MachineState = {
      regs,
      pc: v.getUint32(o, true),
      instret,
      pending: v.getUint32(o + 12, true),
      state,
      exitCode: bytes[o + 17] ? v.getInt32(o + 20, true) : null,
      bindings: [],
    };
    o += MACHINE_FIXED_BYTES - 32 * 4;
    need(count * BINDING_BYTES, "bindings");
    for (let i = 0; i < count; i++, o += BINDING_BYTES) {
      const b: Binding = { port: bytes[o], kind: bytes[o + 1] as DeviceKind, ring: v.getUint32(o + 4, true) };
      if (b.port >= PORTS || b.kind > DeviceKind.BLK || b.ring % PAGE_SIZE !== 0 || b.ring / PAGE_SIZE >= frame.memoryPages) {
        throw new CheckpointError(`bad binding ${JSON.stringify(b)}`);
      }
      m.bindings.push(b);
    }
    frame.machine = m;
  }
  const entries = v.getUint32(At.ENTRIES, true);
  for (let i = 0; i < entries; i++) {
    need(ENTRY_HEADER_BYTES, "entry header");
    const space = bytes[o] as Space;
    const enc = bytes[o + 1] as Enc;
    const index = v.getUint32(o + 4, true);
    const len = v.getUint32(o + 8, true);
    o += ENTRY_HEADER_BYTES;
    need(len, "entry data");
    checkEntry(frame, space, enc, index, len);
    frame.entries.push({ space, index, enc, data: bytes.subarray(o, o + len) });
    o += len;
  }
  if (o !== end) throw new CheckpointError(`${end - o} bytes after the last entry`);
  return frame;
}

function checkEntry(f: Frame, space: Space, enc: Enc, index: number, len: number): void {
  if (space === Space.PAGE) {
    if (index >= f.memoryPages) throw new CheckpointError(`page ${index} beyond ${f.memoryPages} pages`);
    const ok = enc === Enc.RAW ? len === PAGE_SIZE : enc === Enc.DELTA ? len <= PAGE_SIZE : enc === Enc.ZERO && len === 0;
    if (!ok) throw new CheckpointError(`page ${index}: encoding ${enc} with ${len} bytes`);
  } else if (space === Space.SECTOR) {
    if (index >= f.diskSectors) throw new CheckpointError(`sector ${index} beyond ${f.diskSectors} sectors`);
    if (enc !== Enc.RAW || len !== SECTOR_SIZE) throw new CheckpointError(`sector ${index}: encoding ${enc} with ${len} bytes`);
  } else if (space === Space.OUTPUT) {
    if (enc > 1 || len === 0 || len > MAX_OUTPUT_BYTES) throw new CheckpointError(`output ${index}: device ${enc} with ${len} bytes`);
  } else {
    throw new CheckpointError(`unknown space ${space as number}`);
  }
}
