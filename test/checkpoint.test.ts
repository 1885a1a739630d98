/**
 * The Kemari checkpoint path as plain logic: the frame codec, page deltas,
 * and the primary's Replicator talking to a secondary's Replica over an
 * in-process link. Invariants 4 (atomicity), 5 (durability) and 6 (cost
 * follows change) of docs/design.md, and a restored machine going on
 * exactly as the original would have.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeviceKind, Hypercall, Reg, SECTOR_SIZE } from "../src/guest/abi.ts";
import { Machine } from "../src/guest/machine.ts";
import { Memory, PAGE_SIZE } from "../src/guest/memory.ts";
import { buildImage } from "../src/image/load.ts";
import {
  CHECKPOINT_MAGIC,
  CHECKPOINT_VERSION,
  CheckpointError,
  ENTRY_HEADER_BYTES,
  Enc,
  HEADER_BYTES,
  Space,
  decodeFrame,
  encodeFrame,
  frameBytes,
  machineBytes,
  type Entry,
  type Frame,
  type MachineState,
} from "../src/kemari/checkpoint.ts";
import { crc32 } from "../src/kemari/crc32.ts";
import { PageHistory, applyDelta, encodeDelta } from "../src/kemari/delta.ts";
import { MemoryReplicaStore, Replica } from "../src/kemari/replica.ts";
import { InvariantError, Replicator, SyncRefused, type SecondaryLink, type SyncReply } from "../src/kemari/replicator.ts";
import { captureMachine, restoreMachine } from "../src/kemari/state.ts";
import { runs } from "./helpers/fuzz.ts";

// ───────────────────────── helpers ─────────────────────────

const TRAILER = 4;
const GEN = 3;

/** A small deterministic PRNG (mulberry32), so big random buffers cost no fast-check shrinking. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r() & 0xff;
  return out;
}

/** Index of the first differing byte, -1 if equal (cheaper than a deep equal of 64 KiB). */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Fix a frame's body length and CRC after a deliberate edit, so deeper checks are reached. */
function reseal(bytes: Uint8Array, fixLength = false): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HEADER_BYTES + TRAILER) return bytes;
  if (fixLength) v.setUint32(32, bytes.length - HEADER_BYTES - TRAILER, true);
  const end = bytes.length - TRAILER;
  v.setUint32(end, crc32(bytes, 0, end), true);
  return bytes;
}

/** Decode, reporting what happened instead of throwing. */
function outcome(bytes: Uint8Array): { frame: Frame } | { refused: string } | { other: unknown } {
  try {
    return { frame: decodeFrame(bytes) };
  } catch (e) {
    return e instanceof CheckpointError ? { refused: e.reason } : { other: e };
  }
}

function machineState(over: Partial<MachineState> = {}): MachineState {
  const regs = new Int32Array(32);
  for (let r = 1; r < 32; r++) regs[r] = Math.imul(r, 0x9e3779b1);
  return {
    regs,
    pc: 0x80000ffc,
    instret: 123_456_789_012,
    pending: 0x80000005,
    state: "waiting",
    exitCode: null,
    bindings: [
      { port: 1, kind: DeviceKind.CONSOLE, ring: 0x3000 },
      { port: 31, kind: DeviceKind.BLK, ring: 15 * PAGE_SIZE },
    ],
    ...over,
  };
}

function frame(over: Partial<Frame> = {}): Frame {
  return { seq: 7, generation: GEN, part: 0, full: false, memoryPages: 16, diskSectors: 64, machine: null, entries: [], ...over };
}

/** A small frame touching every part of the format: machine state, and page entries of every encoding. */
const SMALL: Frame = frame({
  machine: machineState(),
  entries: [
    { space: Space.PAGE, index: 0, enc: Enc.ZERO, data: new Uint8Array(0) },
    { space: Space.PAGE, index: 15, enc: Enc.DELTA, data: Uint8Array.of(4, 0, 3, 0, 0xaa, 0xbb, 0xcc) },
    { space: Space.PAGE, index: 2, enc: Enc.DELTA, data: new Uint8Array(0) },
  ],
});

// ───────────────────────── codec ─────────────────────────

describe("checkpoint frame codec", () => {
  it("round-trips a commit frame with machine state and raw, delta, zero page entries and sector entries", () => {
    const f = frame({
      full: true,
      machine: machineState({ state: "halted", exitCode: -7, pending: 0 }),
      entries: [
        { space: Space.PAGE, index: 3, enc: Enc.RAW, data: randomBytes(PAGE_SIZE, 1) },
        { space: Space.PAGE, index: 4, enc: Enc.DELTA, data: Uint8Array.of(0, 1, 2, 0, 9, 9) },
        { space: Space.PAGE, index: 5, enc: Enc.ZERO, data: new Uint8Array(0) },
        { space: Space.SECTOR, index: 63, enc: Enc.RAW, data: randomBytes(SECTOR_SIZE, 2) },
      ],
    });
    const bytes = encodeFrame(f);
    expect(bytes.length).toBe(frameBytes(f));
    expect(bytes.length).toBe(HEADER_BYTES + machineBytes(f.machine) + 4 * ENTRY_HEADER_BYTES + PAGE_SIZE + 6 + SECTOR_SIZE + TRAILER);
    const d = decodeFrame(bytes);
    expect(d).toEqual(f);
    expect(d.machine!.regs).toBeInstanceOf(Int32Array);
    expect(d.machine!.exitCode).toBe(-7);
    expect(d.entries.map((e) => [e.space, e.index, e.enc, e.data.length])).toEqual([
      [Space.PAGE, 3, Enc.RAW, PAGE_SIZE],
      [Space.PAGE, 4, Enc.DELTA, 6],
      [Space.PAGE, 5, Enc.ZERO, 0],
      [Space.SECTOR, 63, Enc.RAW, SECTOR_SIZE],
    ]);
    expect(firstDiff(d.entries[0].data, f.entries[0].data)).toBe(-1);
  });

  it("round-trips a non-commit frame (no machine state) and an empty one", () => {
    const f = frame({ part: 4, seq: 0xffffffff, generation: 0xfffffffe, entries: [{ space: Space.PAGE, index: 9, enc: Enc.RAW, data: randomBytes(PAGE_SIZE, 3) }] });
    const bytes = encodeFrame(f);
    expect(new DataView(bytes.buffer).getUint16(6, true)).toBe(0); // neither FULL nor COMMIT
    expect(decodeFrame(bytes)).toEqual(f);
    const empty = frame({ full: true });
    expect(encodeFrame(empty).length).toBe(HEADER_BYTES + TRAILER);
    expect(decodeFrame(encodeFrame(empty))).toEqual(empty);
  });

  it("writes x0 as zero whatever the register file holds, and the header fields little-endian", () => {
    const m = machineState();
    m.regs[0] = 99;
    const bytes = encodeFrame(frame({ machine: m, seq: 0x01020304 }));
    const v = new DataView(bytes.buffer);
    expect(v.getUint32(0, true)).toBe(CHECKPOINT_MAGIC);
    expect(String.fromCharCode(...bytes.subarray(0, 4))).toBe("KMRI");
    expect(v.getUint16(4, true)).toBe(CHECKPOINT_VERSION);
    expect(Array.from(bytes.subarray(8, 12))).toEqual([4, 3, 2, 1]);
    expect(decodeFrame(bytes).machine!.regs[0]).toBe(0);
  });

  it("refuses every single-byte corruption of a small frame with a CheckpointError", () => {
    const good = encodeFrame(SMALL);
    expect(good.length).toBeLessThan(400);
    expect(decodeFrame(good)).toEqual(SMALL);
    const accepted: string[] = [];
    const wrongError: string[] = [];
    for (let i = 0; i < good.length; i++) {
      for (const x of [0x01, 0x80, 0xff, 0x5a]) {
        const bad = good.slice();
        bad[i] ^= x;
        const r = outcome(bad);
        if ("frame" in r) accepted.push(`${i}^${x}`);
        else if ("other" in r) wrongError.push(`${i}^${x}: ${String(r.other)}`);
      }
    }
    expect(accepted).toEqual([]);
    expect(wrongError).toEqual([]);
  });

  it("refuses every truncation and every extension", () => {
    const good = encodeFrame(SMALL);
    for (let n = 0; n < good.length; n++) {
      const r = outcome(good.slice(0, n));
      expect(r, `truncated to ${n}`).toHaveProperty("refused");
    }
    for (const extra of [1, 4, 100]) {
      const longer = new Uint8Array(good.length + extra);
      longer.set(good);
      expect(outcome(longer), `${extra} extra bytes`).toHaveProperty("refused");
    }
    // A subarray of a bigger buffer decodes like a copy (the DataView honours byteOffset).
    const host = new Uint8Array(good.length + 10);
    host.set(good, 7);
    expect(decodeFrame(host.subarray(7, 7 + good.length))).toEqual(SMALL);
  });

  it("refuses a wrong magic, an unknown version and unknown flags, even with a valid checksum", () => {
    const edit = (fn: (v: DataView) => void): Uint8Array => {
      const b = encodeFrame(SMALL);
      fn(new DataView(b.buffer));
      return reseal(b);
    };
    const reason = (b: Uint8Array) => {
      const r = outcome(b);
      return "refused" in r ? r.refused : `not refused: ${JSON.stringify(r)}`;
    };
    expect(reason(edit((v) => v.setUint32(0, 0x4952_4d4c, true)))).toMatch(/magic/);
    expect(reason(edit((v) => v.setUint16(4, CHECKPOINT_VERSION + 1, true)))).toMatch(/version 2/);
    expect(reason(edit((v) => v.setUint16(4, 0, true)))).toMatch(/version 0/);
    expect(reason(edit((v) => v.setUint16(6, v.getUint16(6, true) | 4, true)))).toMatch(/unknown flags 0x6/);
    expect(reason(edit((v) => v.setUint16(6, 0x8000, true)))).toMatch(/unknown flags/);
  });

  it("refuses frames whose content breaks the format's rules (checked after the checksum)", () => {
    const reason = (f: Frame) => {
      const r = outcome(encodeFrame(f));
      return "refused" in r ? r.refused : `not refused: ${"frame" in r ? "accepted" : String(r.other)}`;
    };
    const page = (over: Partial<Entry>): Entry => ({ space: Space.PAGE, index: 0, enc: Enc.RAW, data: new Uint8Array(PAGE_SIZE), ...over });
    expect(reason(frame({ entries: [page({ index: 16 })] }))).toMatch(/page 16 beyond 16/);
    expect(reason(frame({ entries: [page({ data: new Uint8Array(PAGE_SIZE - 1) })] }))).toMatch(/encoding 0 with 4095/);
    expect(reason(frame({ entries: [page({ enc: Enc.DELTA, data: new Uint8Array(PAGE_SIZE + 1) })] }))).toMatch(/encoding 1/);
    expect(reason(frame({ entries: [page({ enc: Enc.ZERO, data: new Uint8Array(1) })] }))).toMatch(/encoding 2/);
    expect(reason(frame({ entries: [page({ enc: 3 as Enc })] }))).toMatch(/encoding 3/);
    expect(reason(frame({ entries: [{ space: Space.SECTOR, index: 64, enc: Enc.RAW, data: new Uint8Array(SECTOR_SIZE) }] }))).toMatch(/sector 64/);
    expect(reason(frame({ entries: [{ space: Space.SECTOR, index: 0, enc: Enc.DELTA, data: new Uint8Array(SECTOR_SIZE) }] }))).toMatch(/sector 0/);
    expect(reason(frame({ entries: [{ space: 3 as Space, index: 0, enc: Enc.RAW, data: new Uint8Array(0) }] }))).toMatch(/unknown space 3/);
    expect(reason(frame({ entries: [{ space: Space.OUTPUT, index: 0, enc: Enc.RAW, data: new Uint8Array(0) }] }))).toMatch(/output 0: device 0 with 0 bytes/);
    expect(reason(frame({ entries: [{ space: Space.OUTPUT, index: 5, enc: 2 as Enc, data: new Uint8Array(4) }] }))).toMatch(/output 5: device 2/);
    expect(reason(frame({ entries: [{ space: Space.OUTPUT, index: 5, enc: 1 as Enc, data: new Uint8Array(65537) }] }))).toMatch(/output 5/);
    expect(reason(frame({ machine: machineState({ bindings: [{ port: 32, kind: DeviceKind.CONSOLE, ring: 0 }] }) }))).toMatch(/bad binding/);
    expect(reason(frame({ machine: machineState({ bindings: [{ port: 1, kind: 4 as DeviceKind, ring: 0 }] }) }))).toMatch(/bad binding/);
    expect(reason(frame({ machine: machineState({ bindings: [{ port: 1, kind: DeviceKind.BLK, ring: 0x3004 }] }) }))).toMatch(/bad binding/);
    expect(reason(frame({ machine: machineState({ bindings: [{ port: 1, kind: DeviceKind.BLK, ring: 16 * PAGE_SIZE }] }) }))).toMatch(/bad binding/);
    expect(reason(frame({ machine: machineState({ instret: 2 ** 53 }) }))).toMatch(/instruction count/);
    expect(reason(frame({ machine: machineState({ instret: -1 }) }))).toMatch(/instruction count/);

    // Hand edits of a good frame's bytes, resealed: x0, guest state, entry count, trailing bytes.
    const good = encodeFrame(SMALL);
    const edited = (fn: (b: Uint8Array, v: DataView) => void, fixLength = false) => {
      const b = good.slice();
      fn(b, new DataView(b.buffer));
      const r = outcome(reseal(b, fixLength));
      return "refused" in r ? r.refused : "not refused";
    };
    expect(edited((_, v) => v.setInt32(HEADER_BYTES, 1, true))).toMatch(/x0 is not zero/);
    expect(edited((b) => (b[HEADER_BYTES + 128 + 16] = 6))).toMatch(/unknown guest state 6/);
    expect(edited((_, v) => v.setUint32(28, 4, true))).toMatch(/entry header runs past/);
    expect(edited((_, v) => v.setUint32(28, 2, true))).toMatch(/bytes after the last entry/);
    expect(edited((b) => (b[HEADER_BYTES + 128 + 18] = 40))).toMatch(/bindings runs past|bad binding/);
  });

  const validFrames = [
    encodeFrame(SMALL),
    encodeFrame(frame({ entries: [{ space: Space.SECTOR, index: 1, enc: Enc.RAW, data: randomBytes(SECTOR_SIZE, 5) }] })),
    encodeFrame(frame({ full: true, machine: machineState({ bindings: [] }) })),
  ];

  it("property: any bytes, and any mutation of a valid frame, decode to a Frame or a CheckpointError", () => {
    const check = (bytes: Uint8Array) => {
      const r = outcome(bytes);
      if ("other" in r) throw r.other;
      // Whatever is accepted accounts for every byte it came in.
      if ("frame" in r) expect(frameBytes(r.frame)).toBe(bytes.length);
    };
    const anyBytes = fc.uint8Array({ maxLength: 200 });
    // A plausible header (magic, version, small counts) over an arbitrary body, resealed: reaches the parser.
    const headed = fc
      .record({
        flags: fc.integer({ min: 0, max: 3 }),
        pages: fc.integer({ min: 0, max: 20 }),
        sectors: fc.integer({ min: 0, max: 4 }),
        entries: fc.integer({ min: 0, max: 5 }),
        body: fc.uint8Array({ maxLength: 300 }),
      })
      .map(({ flags, pages, sectors, entries, body }) => {
        const b = new Uint8Array(HEADER_BYTES + body.length + TRAILER);
        const v = new DataView(b.buffer);
        v.setUint32(0, CHECKPOINT_MAGIC, true);
        v.setUint16(4, CHECKPOINT_VERSION, true);
        v.setUint16(6, flags, true);
        v.setUint32(20, pages, true);
        v.setUint32(24, sectors, true);
        v.setUint32(28, entries, true);
        b.set(body, HEADER_BYTES);
        return reseal(b, true);
      });
    const mutated = fc
      .record({
        which: fc.integer({ min: 0, max: validFrames.length - 1 }),
        edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        resize: fc.integer({ min: -12, max: 12 }),
        resealed: fc.boolean(),
        fixLength: fc.boolean(),
      })
      .map(({ which, edits, resize, resealed, fixLength }) => {
        const src = validFrames[which];
        const b = new Uint8Array(Math.max(0, src.length + resize));
        b.set(src.subarray(0, b.length));
        for (const [at, value] of edits) b[at % b.length] = value;
        return resealed ? reseal(b, fixLength) : b;
      });
    fc.assert(fc.property(fc.oneof(anyBytes, headed, mutated), check), { numRuns: runs(500) });
  });

  it("property: arbitrary well-formed frames round-trip", () => {
    const entryArb: fc.Arbitrary<Entry> = fc.oneof(
      fc.record({ index: fc.integer({ min: 0, max: 15 }), seed: fc.nat() }).map(({ index, seed }) => ({ space: Space.PAGE, index, enc: Enc.RAW, data: randomBytes(PAGE_SIZE, seed) })),
      fc.record({ index: fc.integer({ min: 0, max: 15 }), data: fc.uint8Array({ maxLength: 64 }) }).map(({ index, data }) => ({ space: Space.PAGE, index, enc: Enc.DELTA, data })),
      fc.integer({ min: 0, max: 15 }).map((index) => ({ space: Space.PAGE, index, enc: Enc.ZERO, data: new Uint8Array(0) })),
      fc.record({ index: fc.integer({ min: 0, max: 63 }), seed: fc.nat() }).map(({ index, seed }) => ({ space: Space.SECTOR, index, enc: Enc.RAW, data: randomBytes(SECTOR_SIZE, seed) })),
    );
    const machineArb = fc.record({
      regs: fc.array(fc.integer({ min: -0x80000000, max: 0x7fffffff }), { minLength: 31, maxLength: 31 }).map((r) => Int32Array.from([0, ...r])),
      pc: fc.nat({ max: 0xffffffff }),
      instret: fc.maxSafeNat(),
      pending: fc.nat({ max: 0xffffffff }),
      state: fc.constantFrom("running", "waiting", "paused", "breakpoint", "halted", "crashed" as const),
      exitCode: fc.option(fc.integer({ min: -0x80000000, max: 0x7fffffff })),
      bindings: fc.uniqueArray(
        fc.record({ port: fc.integer({ min: 0, max: 31 }), kind: fc.constantFrom(...Object.values(DeviceKind)), ring: fc.integer({ min: 0, max: 15 }).map((p) => p * PAGE_SIZE) }),
        { maxLength: 4, selector: (b) => b.port },
      ),
    });
    const frameArb = fc.record({
      seq: fc.nat({ max: 0xffffffff }),
      generation: fc.nat({ max: 0xffffffff }),
      part: fc.nat({ max: 0xffffffff }),
      full: fc.boolean(),
      memoryPages: fc.constant(16),
      diskSectors: fc.constant(64),
      machine: fc.option(machineArb),
      entries: fc.array(entryArb, { maxLength: 4 }),
    });
    fc.assert(
      fc.property(frameArb, (f) => {
        const bytes = encodeFrame(f as Frame);
        expect(bytes.length).toBe(frameBytes(f as Frame));
        expect(decodeFrame(bytes)).toEqual(f);
      }),
      { numRuns: runs(150) },
    );
  });
});

// ───────────────────────── delta ─────────────────────────

describe("page deltas", () => {
  const roundTrip = (prev: Uint8Array, next: Uint8Array) => {
    const d = encodeDelta(prev, next);
    if (d === null) return null;
    if (firstDiff(prev, next) === -1) expect(d.length).toBe(0);
    else expect(d.length).toBeLessThan(next.length);
    const page = prev.slice();
    applyDelta(page, d);
    expect(firstDiff(page, next)).toBe(-1);
    return d;
  };

  it("property: encodeDelta gives null or a smaller delta that turns prev into next exactly", () => {
    // Whole pages, mostly equal with sparse changes (the common case), or unrelated.
    const pageCase = fc.record({
      base: fc.oneof(fc.constant(-1), fc.nat()),
      changes: fc.array(fc.record({ at: fc.integer({ min: 0, max: PAGE_SIZE - 1 }), len: fc.integer({ min: 1, max: 300 }), seed: fc.nat(), equalBytes: fc.boolean() }), { maxLength: 12 }),
      unrelated: fc.boolean(),
    });
    fc.assert(
      fc.property(pageCase, ({ base, changes, unrelated }) => {
        const prev = base < 0 ? new Uint8Array(PAGE_SIZE) : randomBytes(PAGE_SIZE, base);
        const next = unrelated ? randomBytes(PAGE_SIZE, base + 1) : prev.slice();
        for (const c of changes) {
          const data = randomBytes(c.len, c.seed);
          // Some changes write a byte pattern with gaps of equal bytes, to cut literals into short runs.
          for (let k = 0; k < c.len && c.at + k < PAGE_SIZE; k++) if (!c.equalBytes || k % 3 !== 0) next[c.at + k] = data[k];
        }
        const d = roundTrip(prev, next);
        if (!unrelated && changes.length === 0) expect(d).toEqual(new Uint8Array(0)); // identical: nothing to send
        if (unrelated) expect(d).toBeNull();
      }),
      { numRuns: runs(300) },
    );
    // Short arrays of any length and content (edges: runs at the very start and end).
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 80 }).chain((n) => fc.tuple(fc.uint8Array({ minLength: n, maxLength: n }), fc.uint8Array({ minLength: n, maxLength: n }), fc.array(fc.nat({ max: 79 })))), ([prev, noise, keep]) => {
        const next = noise.slice();
        for (const k of keep) if (k < next.length) next[k] = prev[k];
        roundTrip(prev, next);
      }),
      { numRuns: runs(300) },
    );
  });

  it("a one-word change costs at most 16 bytes, wherever it is", () => {
    const prev = randomBytes(PAGE_SIZE, 42);
    for (const at of [0, 1, 2, 3, 100, 2046, PAGE_SIZE - 5, PAGE_SIZE - 4]) {
      const next = prev.slice();
      for (let k = 0; k < 4; k++) next[at + k] = ~prev[at + k] & 0xff;
      const d = roundTrip(prev, next);
      expect(d, `word at ${at}`).not.toBeNull();
      expect(d!.length, `word at ${at}`).toBeLessThanOrEqual(16);
    }
    // Two nearby words (a counter and its neighbour) still cost a handful of bytes.
    const next = prev.slice();
    next[200] ^= 1;
    next[206] ^= 1;
    expect(roundTrip(prev, next)!.length).toBeLessThanOrEqual(16);
  });

  it("handles runs longer than a u16 in buffers bigger than a page", () => {
    const n = 300_000;
    const prev = randomBytes(n, 7);
    const sparse = prev.slice();
    for (const at of [0, 70_000, 140_001, 290_000, n - 1]) sparse[at] ^= 0x55;
    expect(roundTrip(prev, sparse)!.length).toBeLessThan(64);
    // A changed stretch longer than a run's u16 length is split into two literals; the
    // unchanged bytes after it need empty runs of at most 65535 zeros before the end is
    // implicit. Runs are found a word at a time, so the literal may round out to words.
    const stretch = prev.slice();
    for (let i = 10; i < 80_010; i++) stretch[i] ^= 0xff;
    const d = roundTrip(prev, stretch);
    expect(d).not.toBeNull();
    expect(d!.length).toBeGreaterThanOrEqual(80_000 + 2 * 4 + 3 * 4);
    expect(d!.length).toBeLessThanOrEqual(80_000 + 8 + 6 * 4);
  });

  it("applyDelta refuses malformed deltas with a RangeError and never writes past the page", () => {
    const cases: [string, number[]][] = [
      ["truncated run header", [0, 0, 1]],
      ["literal past the delta", [0, 0, 5, 0, 1, 2]],
      ["zeros past the page", [0x01, 0x10, 0, 0]],
      ["literal past the page", [0xfe, 0x0f, 4, 0, 1, 2, 3, 4]],
      ["second run past the page", [0, 0, 1, 0, 9, 0xff, 0x0f, 1, 0, 7]],
    ];
    for (const [what, bytes] of cases) {
      const buf = new Uint8Array(PAGE_SIZE + 64).fill(0xee);
      const page = buf.subarray(32, 32 + PAGE_SIZE);
      expect(() => applyDelta(page, Uint8Array.from(bytes)), what).toThrow(RangeError);
      expect(buf.subarray(0, 32).every((x) => x === 0xee), what).toBe(true);
      expect(buf.subarray(32 + PAGE_SIZE).every((x) => x === 0xee), what).toBe(true);
    }
    // A run that ends exactly at the page end is fine.
    const page = new Uint8Array(PAGE_SIZE);
    applyDelta(page, Uint8Array.of(0xff, 0x0f, 1, 0, 0x7f));
    expect(page[PAGE_SIZE - 1]).toBe(0x7f);

    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 64 }), (delta, size) => {
        const buf = new Uint8Array(size + 16).fill(0xee);
        const p = buf.subarray(8, 8 + size);
        try {
          applyDelta(p, delta);
        } catch (e) {
          expect(e).toBeInstanceOf(RangeError);
        }
        expect(buf.subarray(0, 8).every((x) => x === 0xee)).toBe(true);
        expect(buf.subarray(8 + size).every((x) => x === 0xee)).toBe(true);
      }),
      { numRuns: runs(500) },
    );
  });

  it("PageHistory replaces (never changes) what it holds, and evicts the least recently set page beyond its capacity", () => {
    const h = new PageHistory(3);
    const data = (b: number) => new Uint8Array(PAGE_SIZE).fill(b);
    const first = data(1);
    h.set(1, first);
    h.set(2, data(2));
    h.set(3, data(3));
    h.set(1, data(11)); // refresh: 1 is now the newest
    // A checkpoint taken before holds the old version as its delta base: it must not change under it.
    expect(first[0]).toBe(1);
    h.set(4, data(4)); // evicts 2, the oldest
    expect(h.size).toBe(3);
    expect(h.get(2)).toBeUndefined();
    expect([h.get(1)![0], h.get(3)![0], h.get(4)![0]]).toEqual([11, 3, 4]);
    h.set(5, data(5)); // evicts 3
    expect(h.get(3)).toBeUndefined();
    expect(h.size).toBe(3);
    h.clear();
    expect(h.size).toBe(0);
    expect(h.get(1)).toBeUndefined();

    const none = new PageHistory(0);
    none.set(1, data(1));
    none.set(2, data(2));
    expect(none.size).toBe(0);
    expect(none.get(2)).toBeUndefined();
  });
});

// ───────────────────────── replicator → replica ─────────────────────────

interface Rig {
  m: Machine;
  store: MemoryReplicaStore;
  /** The secondary the link delivers to (replaced on a "restart"). */
  replica: Replica;
  rep: Replicator;
  /** Every frame handed to the link, in order. */
  sent: Uint8Array[];
  /** Per-frame fault: return a reply, throw, or undefined to deliver normally. */
  fault: ((bytes: Uint8Array, index: number) => SyncReply | "deliver-then-throw" | undefined) | null;
}

function rig(options: { maxFrameBytes?: number; delta?: boolean; historyPages?: number } = {}, pages = 16): Rig {
  const store = new MemoryReplicaStore();
  const r = { m: new Machine(pages), store, replica: new Replica(store, GEN), sent: [], fault: null } as unknown as Rig;
  const link: SecondaryLink = {
    send: async (bytes) => {
      const index = r.sent.length;
      r.sent.push(bytes);
      const f = r.fault?.(bytes, index);
      if (f === "deliver-then-throw") {
        r.replica.receive(bytes);
        throw new Error("link down: the reply was lost");
      }
      if (f) return f;
      return r.replica.receive(bytes);
    },
  };
  r.rep = new Replicator(GEN, link, options);
  return r;
}

const SYNC = { diskSectors: 64 } as const;

function expectInSync(r: Rig): void {
  expect(r.replica.seq).toBe(r.rep.seq);
  expect(r.replica.memory).not.toBeNull();
  expect(firstDiff(r.replica.memory!, r.m.memory.bytes)).toBe(-1);
  expect(r.replica.meta!.machine).toEqual(captureMachine(r.m));
}

function snapshot(replica: Replica) {
  return { seq: replica.seq, memory: replica.memory!.slice(), meta: structuredClone(replica.meta) };
}

function expectAt(replica: Replica, snap: ReturnType<typeof snapshot>): void {
  expect(replica.seq).toBe(snap.seq);
  expect(firstDiff(replica.memory!, snap.memory)).toBe(-1);
  expect(replica.meta).toEqual(snap.meta);
}

/** Write `len` random bytes (or zeros) at `addr`, as a guest store or a backend would. */
function scribble(m: Machine, addr: number, len: number, seed: number, zero = false): void {
  const n = Math.min(len, m.memory.size - addr);
  m.memory.write(addr, zero ? new Uint8Array(n) : randomBytes(n, seed));
}

/** Make k pages dirty with random (incompressible) contents. */
function dirtyPages(m: Machine, pages: number[], seed: number): void {
  for (const p of pages) m.memory.write(p * PAGE_SIZE, randomBytes(PAGE_SIZE, seed + p));
}

const FIXED = (m: Machine) => HEADER_BYTES + machineBytes(captureMachine(m)) + TRAILER;

describe("Replicator → Replica", () => {
  type Cmd =
    | { kind: "write"; addr: number; len: number; seed: number; zero: boolean }
    | { kind: "sync"; full: boolean }
    | { kind: "cpu"; reg: number; value: number; pc: number; steps: number }
    | { kind: "raise"; port: number }
    | { kind: "bind"; port: number; page: number; unbind: boolean };

  const PAGES = 16;
  const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("write" as const), addr: fc.integer({ min: 0, max: PAGES * PAGE_SIZE - 1 }), len: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 9000 })), seed: fc.nat(), zero: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("sync" as const), full: fc.integer({ min: 0, max: 9 }).map((x) => x < 2) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("cpu" as const), reg: fc.integer({ min: 1, max: 31 }), value: fc.integer({ min: -0x80000000, max: 0x7fffffff }), pc: fc.nat({ max: 0xffff }).map((x) => x * 4), steps: fc.nat({ max: 1_000_000 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("raise" as const), port: fc.integer({ min: 0, max: 31 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("bind" as const), port: fc.integer({ min: 0, max: 31 }), page: fc.integer({ min: 0, max: PAGES - 1 }), unbind: fc.boolean() }) },
  );

  it.each([
    { delta: true, maxFrameBytes: undefined },
    { delta: false, maxFrameBytes: undefined },
    { delta: true, maxFrameBytes: 10_000 },
    { delta: false, maxFrameBytes: 10_000 },
  ])("property: after every sync the replica equals the machine (delta $delta, maxFrameBytes $maxFrameBytes)", async (options) => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { maxLength: 30 }), fc.constantFrom(undefined, 2), async (cmds, historyPages) => {
        const r = rig({ ...options, historyPages }, PAGES);
        const { m, rep } = r;
        let dirty = new Set<number>();
        const sync = async (full: boolean) => {
          const expected = full || rep.needsFull ? PAGES : dirty.size;
          const sentBefore = r.sent.length;
          const stats = await rep.sync(m, { ...SYNC, full });
          dirty = new Set();
          expectInSync(r);
          expect(stats.full).toBe(full || stats.seq === 1);
          expect(stats.pages).toBe(expected);
          expect(stats.frames).toBe(r.sent.length - sentBefore);
          expect(stats.sentBytes).toBe(r.sent.slice(sentBefore).reduce((n, b) => n + b.length, 0));
          // Cost follows change: at most a raw page (and its entry header) per page, and fixed overhead per frame.
          expect(stats.sentBytes).toBeLessThanOrEqual(stats.pages * (PAGE_SIZE + ENTRY_HEADER_BYTES) + stats.frames * FIXED(m));
          for (const b of r.sent.slice(sentBefore)) expect(b.length).toBeLessThanOrEqual(options.maxFrameBytes ?? Infinity);
          expect(m.memory.dirtyPageCount).toBe(0);
        };
        for (const c of cmds) {
          switch (c.kind) {
            case "write": {
              const n = Math.min(c.len, m.memory.size - c.addr);
              scribble(m, c.addr, n, c.seed, c.zero);
              for (let p = c.addr >>> 12; p <= (c.addr + n - 1) >>> 12; p++) dirty.add(p);
              break;
            }
            case "sync":
              await sync(c.full);
              break;
            case "cpu":
              m.cpu.regs[c.reg] = c.value;
              m.cpu.pc = c.pc;
              m.cpu.instret += c.steps;
              break;
            case "raise":
              m.raise(c.port);
              break;
            case "bind":
              m.bindings[c.port] = c.unbind ? null : { port: c.port, kind: DeviceKind.NET_RX, ring: c.page * PAGE_SIZE };
              break;
          }
        }
        await sync(false);
        expect(r.replica.stats.refused).toBe(0);
      }),
      { numRuns: runs(100) },
    );
  });

  it("a small frame limit splits a checkpoint into several frames, the machine state on the last", async () => {
    const r = rig({ maxFrameBytes: 10_000, delta: false });
    dirtyPages(r.m, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 1);
    const stats = await r.rep.sync(r.m, SYNC);
    expect(stats.frames).toBe(5); // two raw pages per frame
    const frames = r.sent.map(decodeFrame);
    expect(frames.map((f) => f.part)).toEqual([0, 1, 2, 3, 4]);
    expect(frames.map((f) => f.machine !== null)).toEqual([false, false, false, false, true]);
    expect(frames.every((f) => f.seq === 1 && f.full && f.generation === GEN)).toBe(true);
    expectInSync(r);
  });

  it("a full checkpoint carries the disk's written sectors, and a zeroed page reaches the replica as zero", async () => {
    const r = rig();
    const sector = randomBytes(SECTOR_SIZE, 9);
    scribble(r.m, 5 * PAGE_SIZE, 100, 3);
    await r.rep.sync(r.m, { diskSectors: 64, sectors: [[3, sector], [4, new Uint8Array(SECTOR_SIZE)]] });
    expect([...r.store.sectors.keys()]).toEqual([3]); // all-zero sectors are not sent
    expect(firstDiff(r.store.sectors.get(3)!, sector)).toBe(-1);
    expect([...r.store.pages.keys()]).toEqual([5]); // only non-zero pages are stored
    scribble(r.m, 5 * PAGE_SIZE, 100, 0, true);
    const start = r.sent.length;
    await r.rep.sync(r.m, SYNC);
    expect(decodeFrame(r.sent[start]).entries).toEqual([{ space: Space.PAGE, index: 5, enc: Enc.ZERO, data: new Uint8Array(0) }]);
    expect(r.store.pages.size).toBe(0);
    expectInSync(r);
  });

  it("cost follows change: an incremental sync of k dirty pages costs the same whatever the memory size", async () => {
    const sent: number[] = [];
    for (const pages of [16, 1024]) {
      const r = rig({ delta: false }, pages);
      const full = await r.rep.sync(r.m, SYNC);
      expect(full.pages).toBe(pages);
      dirtyPages(r.m, [1, 7, 9], 5);
      const stats = await r.rep.sync(r.m, SYNC);
      expect(stats.full).toBe(false);
      expect(stats.pages).toBe(3);
      expect(stats.frames).toBe(1);
      expect(stats.sentBytes).toBeLessThanOrEqual(3 * (PAGE_SIZE + ENTRY_HEADER_BYTES) + FIXED(r.m));
      sent.push(stats.sentBytes);
      expectInSync(r);
      // Nothing changed: a sync costs only the header and machine state.
      const idle = await r.rep.sync(r.m, SYNC);
      expect(idle.pages).toBe(0);
      expect(idle.sentBytes).toBe(FIXED(r.m));
    }
    expect(sent[0]).toBe(sent[1]);
  });

  it("with delta on, a one-word change sends a few bytes instead of a page", async () => {
    const on = rig({ delta: true });
    const off = rig({ delta: false });
    for (const r of [on, off]) {
      dirtyPages(r.m, [4], 77);
      await r.rep.sync(r.m, SYNC);
      await r.rep.sync(r.m, SYNC); // the page is in the history from here on
      r.m.memory.writeU32(4 * PAGE_SIZE + 0x100, 0xdeadbeef);
    }
    const a = await on.rep.sync(on.m, SYNC);
    const b = await off.rep.sync(off.m, SYNC);
    expect(a.pages).toBe(1);
    expect(b.pages).toBe(1);
    expect(a.sentBytes).toBeLessThanOrEqual(FIXED(on.m) + ENTRY_HEADER_BYTES + 16);
    expect(b.sentBytes).toBe(FIXED(off.m) + ENTRY_HEADER_BYTES + PAGE_SIZE);
    expect(a.deltaSaved).toBeGreaterThanOrEqual(PAGE_SIZE - 16);
    expect(decodeFrame(on.sent.at(-1)!).entries[0].enc).toBe(Enc.DELTA);
    expectInSync(on);
    expectInSync(off);
  });
});

// ───────────────────────── atomicity (invariant 4) ─────────────────────────

describe("atomicity: a checkpoint is applied whole or not at all", () => {
  /** A primary and a secondary in sync after a full checkpoint, plus the frames of a second, 3-frame checkpoint (not yet delivered). */
  async function staged() {
    // The shadow pair generates valid frames; `target` is the replica under test, fed by hand.
    const shadow = rig({ maxFrameBytes: 10_000, delta: true });
    dirtyPages(shadow.m, [0, 3, 8], 1);
    await shadow.rep.sync(shadow.m, SYNC);
    const targetStore = new MemoryReplicaStore();
    const target = new Replica(targetStore, GEN);
    for (const b of shadow.sent) expect(target.receive(b)).toMatchObject({ ok: true });
    const before = snapshot(target);
    expect(before.seq).toBe(1);
    dirtyPages(shadow.m, [1, 2, 3, 4, 5], 2);
    shadow.m.cpu.regs[5] = 55;
    const start = shadow.sent.length;
    await shadow.rep.sync(shadow.m, SYNC);
    const next = shadow.sent.slice(start);
    expect(next.length).toBe(3);
    return { shadow, target, targetStore, before, next };
  }

  it("a torn transfer (the first frame only, then the next checkpoint) is refused; the replica stays at the previous checkpoint", async () => {
    const { shadow, target, before, next } = await staged();
    expect(target.receive(next[0])).toEqual({ ok: true, seq: 2, committed: false });
    expectAt(target, before);
    // The next checkpoint begins; its frames do not follow what was staged.
    dirtyPages(shadow.m, [6], 3);
    const start = shadow.sent.length;
    await shadow.rep.sync(shadow.m, SYNC);
    for (const b of shadow.sent.slice(start)) {
      const reply = target.receive(b);
      expect(reply.ok && reply.committed).toBe(false);
      expectAt(target, before);
    }
    // The rest of the torn checkpoint cannot complete it any more either.
    for (const b of next.slice(1)) expect(target.receive(b).ok).toBe(false);
    expectAt(target, before);
    expect(target.stats.committed).toBe(1);
  });

  it("a torn transfer through the Replicator leaves the replica behind; and the retry, starting again at part 0, is applied whole", async () => {
    const r = rig({ maxFrameBytes: 10_000 });
    await r.rep.sync(r.m, SYNC);
    const before = snapshot(r.replica);
    dirtyPages(r.m, [1, 2, 3, 4, 5], 2);
    const first = r.sent.length;
    r.fault = (_, i) => (i === first ? undefined : { ok: false, code: "unreachable", reason: "cut" });
    await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow(SyncRefused);
    expect(r.sent.length).toBe(first + 2); // one frame delivered, the second cut
    expectAt(r.replica, before);
    expect(r.rep.seq).toBe(1);
    expect([...r.m.memory.dirtyPages()]).toEqual([1, 2, 3, 4, 5]);
    r.fault = null;
    // A first part starts a checkpoint over: the torn frames staged before it are dropped.
    await r.rep.sync(r.m, SYNC);
    expect(r.rep.seq).toBe(2);
    expectInSync(r);
  });

  it("a frame with a bad checksum mid-checkpoint is refused and nothing of the checkpoint is applied", async () => {
    const { shadow, target, before, next } = await staged();
    expect(target.receive(next[0]).ok).toBe(true);
    const bad = next[1].slice();
    bad[bad.length >> 1] ^= 0x20;
    expect(target.receive(bad)).toMatchObject({ ok: false, code: "corrupt", reason: "checksum mismatch" });
    expectAt(target, before);
    expect(target.receive(next[2])).toMatchObject({ ok: false, code: "out-of-order" });
    expectAt(target, before);
    // The same checkpoint, sent again whole and intact, is applied.
    for (const b of next) expect(target.receive(b).ok).toBe(true);
    expect(target.seq).toBe(2);
    expect(firstDiff(target.memory!, shadow.m.memory.bytes)).toBe(-1);
    expect(target.meta!.machine).toEqual(captureMachine(shadow.m));
  });

  it("a checkpoint whose delta cannot be applied is refused whole, though earlier frames decoded fine", async () => {
    const { target, before } = await staged();
    const head = { seq: 2, generation: GEN, full: false, memoryPages: 16, diskSectors: 64 };
    const good = encodeFrame({ ...head, part: 0, machine: null, entries: [{ space: Space.PAGE, index: 7, enc: Enc.RAW, data: randomBytes(PAGE_SIZE, 1) }] });
    const badDelta = encodeFrame({ ...head, part: 1, machine: captureMachine(new Machine(16)), entries: [{ space: Space.PAGE, index: 3, enc: Enc.DELTA, data: Uint8Array.of(0x00, 0x10, 1, 0, 1) }] });
    expect(target.receive(good).ok).toBe(true);
    expect(target.receive(badDelta)).toMatchObject({ ok: false, code: "corrupt", reason: expect.stringMatching(/page 3/) });
    expectAt(target, before);
    // A delta in a full checkpoint has nothing to apply to.
    const fullDelta = encodeFrame({ ...head, full: true, part: 0, machine: captureMachine(new Machine(16)), entries: [{ space: Space.PAGE, index: 3, enc: Enc.DELTA, data: Uint8Array.of(0, 0, 1, 0, 1) }] });
    expect(target.receive(fullDelta)).toMatchObject({ ok: false, code: "corrupt", reason: expect.stringMatching(/no base version/) });
    expectAt(target, before);
  });

  it("a commit whose storage write fails leaves the replica's memory, machine state and store unchanged", async () => {
    const r = rig({ delta: true });
    dirtyPages(r.m, [2], 1);
    await r.rep.sync(r.m, SYNC);
    const before = snapshot(r.replica);
    const storedMeta = structuredClone(r.store.meta);
    const storedPage = r.store.pages.get(2)!.slice();
    dirtyPages(r.m, [2, 6], 9);
    r.m.cpu.pc = 0x400;
    r.store.failNext = true;
    await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow(/storage failure/);
    expectAt(r.replica, before);
    expect(r.store.meta).toEqual(storedMeta);
    expect(firstDiff(r.store.pages.get(2)!, storedPage)).toBe(-1);
    expect(r.store.pages.has(6)).toBe(false);
    // The primary cannot tell whether the commit happened, so it starts again with a full checkpoint.
    expect(r.rep.needsFull).toBe(true);
    expect(r.rep.seq).toBe(1);
    expect(r.replica.seq).toBe(1);
    const retry = await r.rep.sync(r.m, SYNC);
    expect(retry.full).toBe(true);
    expectInSync(r);
    expect(new Replica(r.store, GEN).memory).toEqual(r.m.memory.bytes);
  });

  it("frames of an older generation are refused as superseded, of a newer one as out-of-order", async () => {
    const store = new MemoryReplicaStore();
    const replica = new Replica(store, GEN);
    const link: SecondaryLink = { send: async (b) => replica.receive(b) };
    const old = new Replicator(GEN - 1, link);
    const m = new Machine(16);
    await expect(old.sync(m, SYNC)).rejects.toMatchObject({ name: "SyncRefused", code: "superseded" });
    expect(replica.meta).toBeNull();
    expect(old.seq).toBe(0);
    const newer = encodeFrame(frame({ generation: GEN + 1, full: true, seq: 1, machine: captureMachine(m) }));
    expect(replica.receive(newer)).toMatchObject({ ok: false, code: "out-of-order" });
    // And once the replica holds a checkpoint, an old primary still cannot touch it.
    const current = new Replicator(GEN, link);
    await current.sync(m, SYNC);
    const before = snapshot(replica);
    m.memory.writeU32(0, 1);
    await expect(old.sync(m, SYNC)).rejects.toMatchObject({ code: "superseded" });
    expectAt(replica, before);
  });

  it("an incremental checkpoint before any full one is refused as out-of-order", async () => {
    const replica = new Replica(new MemoryReplicaStore(), GEN);
    const incremental = encodeFrame(frame({ seq: 1, machine: captureMachine(new Machine(16)) }));
    expect(replica.receive(incremental)).toMatchObject({ ok: false, code: "out-of-order" });
    expect(replica.meta).toBeNull();
    expect(replica.memory).toBeNull();
    // Through a Replicator that believes the secondary is further along.
    const rep = new Replicator(GEN, { send: async (b) => replica.receive(b) });
    rep.seq = 5;
    rep.needsFull = false;
    const m = new Machine(16);
    m.memory.writeU32(0x2000, 7);
    await expect(rep.sync(m, SYNC)).rejects.toMatchObject({ code: "out-of-order" });
    expect(replica.meta).toBeNull();
    expect([...m.memory.dirtyPages()]).toEqual([2]);
  });

  it("an incremental checkpoint that skips a sequence number is refused", async () => {
    const { target, before, next } = await staged();
    const v = new DataView(next[0].buffer.slice(0));
    const skipped = new Uint8Array(v.buffer);
    v.setUint32(8, 3, true);
    expect(target.receive(reseal(skipped))).toMatchObject({ ok: false, code: "out-of-order" });
    expectAt(target, before);
  });

  it("a re-sent committed checkpoint (same seq) is acknowledged without being applied again", async () => {
    const r = rig({ delta: true });
    dirtyPages(r.m, [3], 4);
    await r.rep.sync(r.m, SYNC);
    await r.rep.sync(r.m, SYNC);
    r.m.memory.writeU32(3 * PAGE_SIZE + 8, 0x01020304); // a delta: applying it twice would undo it
    await r.rep.sync(r.m, SYNC);
    const last = r.sent.at(-1)!;
    expect(decodeFrame(last).entries.map((e) => e.enc)).toEqual([Enc.DELTA]);
    const committed = r.replica.stats.committed;
    const before = snapshot(r.replica);
    expect(r.replica.receive(last)).toEqual({ ok: true, seq: 3, committed: true });
    expect(r.replica.receive(last)).toEqual({ ok: true, seq: 3, committed: true });
    expectAt(r.replica, before);
    expect(r.replica.stats.committed).toBe(committed);
    expectInSync(r);
  });

  it("the Replicator marks the pages dirty again when a send fails, so the next sync carries them", async () => {
    const r = rig({ delta: true, maxFrameBytes: 10_000 });
    await r.rep.sync(r.m, SYNC);
    const before = snapshot(r.replica);
    dirtyPages(r.m, [4, 9], 6);
    // Refused by the secondary: it certainly does not hold the checkpoint.
    r.fault = () => ({ ok: false, code: "corrupt", reason: "injected" });
    await expect(r.rep.sync(r.m, SYNC)).rejects.toMatchObject({ code: "corrupt" });
    expect([...r.m.memory.dirtyPages()]).toEqual([4, 9]);
    expect(r.rep.seq).toBe(1);
    expectAt(r.replica, before);
    // A link that throws on the first of several frames: nothing was committed either.
    dirtyPages(r.m, [2, 3], 8);
    r.fault = () => {
      throw new Error("link down");
    };
    await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow("link down");
    expect([...r.m.memory.dirtyPages()]).toEqual([2, 3, 4, 9]);
    expect(r.rep.seq).toBe(1);
    // More is written while the primary retries; the next (incremental) sync carries all of it.
    dirtyPages(r.m, [11], 7);
    r.fault = null;
    const stats = await r.rep.sync(r.m, SYNC);
    expect(stats.full).toBe(false);
    expect(stats.pages).toBe(5);
    expect(stats.seq).toBe(2);
    expectInSync(r);
  });

  it("when the commit frame's send throws, the outcome is unknown and the next sync is full", async () => {
    const r = rig({ delta: true });
    await r.rep.sync(r.m, SYNC);
    dirtyPages(r.m, [4], 6);
    r.fault = () => {
      throw new Error("link down");
    };
    await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow("link down");
    expect([...r.m.memory.dirtyPages()]).toEqual([4]);
    expect(r.rep.needsFull).toBe(true);
    r.fault = null;
    const stats = await r.rep.sync(r.m, SYNC);
    expect(stats.full).toBe(true);
    expectInSync(r);
  });

  it("a lost acknowledgement: the retry still leaves the replica equal to the machine", async () => {
    for (const delta of [true, false]) {
      const r = rig({ delta });
      dirtyPages(r.m, [1, 2], 1);
      await r.rep.sync(r.m, SYNC);
      await r.rep.sync(r.m, SYNC);
      // The secondary commits checkpoint 3, but its reply never reaches the primary.
      r.m.memory.writeU32(PAGE_SIZE + 16, 0xabcdef);
      r.fault = () => "deliver-then-throw";
      await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow(/reply was lost/);
      expect(r.replica.seq).toBe(3);
      r.fault = null;
      // While the primary waits to retry, a backend writes guest memory and raises an event.
      r.m.memory.writeU32(2 * PAGE_SIZE + 40, 0x5151);
      r.m.raise(4);
      await r.rep.sync(r.m, SYNC);
      expectInSync(r);
      // And the pair stays in step afterwards.
      r.m.memory.writeU32(PAGE_SIZE + 16, 0x77);
      const next = await r.rep.sync(r.m, SYNC);
      expect(next.full).toBe(false);
      expectInSync(r);
    }
  });
});

// ───────────────────────── durability (invariant 5) ─────────────────────────

describe("durability: an acknowledged checkpoint survives the secondary's restart", () => {
  it("a replica restarted on the same store holds the same memory and machine state, and goes on incrementally", async () => {
    for (const delta of [true, false]) {
      const r = rig({ delta, maxFrameBytes: 10_000 });
      dirtyPages(r.m, [0, 1, 5, 15], 1);
      r.m.bindings[2] = { port: 2, kind: DeviceKind.NET_TX, ring: 15 * PAGE_SIZE };
      await r.rep.sync(r.m, SYNC);
      r.m.memory.writeU32(5 * PAGE_SIZE + 12, 99);
      scribble(r.m, 0, PAGE_SIZE, 0, true); // page 0 back to zero
      r.m.cpu.regs[Reg.a0] = -1;
      r.m.raise(2);
      await r.rep.sync(r.m, SYNC);
      expectInSync(r);

      const restarted = new Replica(r.store, GEN);
      expect(restarted.seq).toBe(2);
      expect(firstDiff(restarted.memory!, r.m.memory.bytes)).toBe(-1);
      expect(restarted.meta).toEqual(r.replica.meta);
      expect(restarted.meta!.machine).toEqual(captureMachine(r.m));

      r.replica = restarted;
      r.m.memory.writeU32(5 * PAGE_SIZE + 12, 100); // a delta against the restored page (when delta is on)
      dirtyPages(r.m, [7], 2);
      const start = r.sent.length;
      const stats = await r.rep.sync(r.m, SYNC);
      expect(stats.full).toBe(false);
      expect(stats.seq).toBe(3);
      if (delta) expect(r.sent.slice(start).flatMap((b) => decodeFrame(b).entries.map((e) => e.enc))).toContain(Enc.DELTA);
      expectInSync(r);
    }
  });

  it("a refused or failed checkpoint is not what a restart finds", async () => {
    const r = rig();
    dirtyPages(r.m, [3], 1);
    await r.rep.sync(r.m, SYNC);
    const before = snapshot(r.replica);
    dirtyPages(r.m, [3, 4], 2);
    r.store.failNext = true;
    await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow();
    expectAt(new Replica(r.store, GEN), before);
  });

  it("a replica of another generation does not adopt the stored copy", async () => {
    const r = rig();
    dirtyPages(r.m, [3], 1);
    await r.rep.sync(r.m, SYNC);
    const other = new Replica(r.store, GEN + 1);
    expect(other.meta).toBeNull();
    expect(other.memory).toBeNull();
  });
});

// ───────────────────────── restoreMachine ─────────────────────────

/**
 * Binds the console, then walks a 32 KiB buffer with a stride, adding the
 * counter into each word and folding what it stored into s1; notifies the
 * console every 64 steps (a Kemari sync point) and halts with s1.
 */
const PROGRAM = `
.equ ITERATIONS, 3000
_start:
    li   a0, ${DeviceKind.CONSOLE}
    li   a1, 0x3000
    li   a2, 1
    li   a7, ${Hypercall.CONNECT}
    ecall
    li   s0, 0
    li   s1, 0
    li   s2, ITERATIONS
    li   s3, 0x4000
loop:
    li   t0, 1237
    mul  t1, s0, t0
    li   t2, 0x7ffc
    and  t1, t1, t2
    add  t1, t1, s3
    lw   t3, 0(t1)
    add  t3, t3, s0
    xor  s1, s1, t3
    sw   t3, 0(t1)
    andi t4, s0, 63
    bnez t4, skip
    li   a0, 1
    li   a7, ${Hypercall.NOTIFY}
    ecall
skip:
    addi s0, s0, 1
    blt  s0, s2, loop
    mv   a0, s1
    li   a7, ${Hypercall.HALT}
    ecall
`;

function boot(): Machine {
  const m = new Machine(16);
  m.load(buildImage({ asm: PROGRAM }, 16 * PAGE_SIZE));
  return m;
}

/** Run to the end, calling `onNotify` at each event (the Kemari tap). */
async function runToEnd(m: Machine, onNotify?: (n: number) => Promise<void>): Promise<number> {
  let notifies = 0;
  for (let slices = 0; m.state === "running"; slices++) {
    if (slices > 100_000) throw new Error("guest did not finish");
    const r = m.run(997);
    if (r.kind === "notify") {
      expect(r.port).toBe(1);
      notifies++;
      await onNotify?.(notifies);
    }
  }
  return notifies;
}

function expectSameMachine(a: Machine, b: Machine): void {
  expect(b.state, "state").toBe(a.state);
  expect(b.exitCode, "exit code").toBe(a.exitCode);
  expect(b.cpu.pc, "pc").toBe(a.cpu.pc);
  expect(b.cpu.instret, "instret").toBe(a.cpu.instret);
  expect(Array.from(b.cpu.regs.subarray(0, 32))).toEqual(Array.from(a.cpu.regs.subarray(0, 32)));
  expect(b.bindings).toEqual(a.bindings);
  expect(firstDiff(b.memory.bytes, a.memory.bytes)).toBe(-1);
}

describe("restoreMachine", () => {
  it("a machine restored from the replica runs on to exactly the state the original reaches", async () => {
    const reference = boot();
    const events = await runToEnd(reference);
    expect(reference.state).toBe("halted");
    expect(events, "events").toBe(Math.ceil(3000 / 64));
    expect(reference.cpu.regs[8]).toBe(3000); // s0

    // The expected result, computed independently.
    const words = new Int32Array(0x8000 / 4);
    let acc = 0;
    for (let i = 0; i < 3000; i++) {
      const w = ((Math.imul(i, 1237) & 0x7ffc) >>> 2);
      words[w] = (words[w] + i) | 0;
      acc ^= words[w];
    }
    expect(reference.exitCode).toBe(acc);

    for (const failAt of [1, 7, 30]) {
      const r = rig({ delta: true });
      r.m.load(buildImage({ asm: PROGRAM }, 16 * PAGE_SIZE));
      let takeover: Machine | null = null;
      await runToEnd(r.m, async (n) => {
        const stats = await r.rep.sync(r.m, SYNC);
        if (n > 1) expect(stats.pages).toBeLessThanOrEqual(8);
        if (n === failAt) {
          takeover = new Machine(16);
          restoreMachine(takeover, r.replica.meta!.machine, r.replica.memory!);
          expectSameMachine(r.m, takeover);
        }
      });
      expect(takeover).not.toBeNull();
      const t = takeover as unknown as Machine;
      expect(t.state).toBe("running");
      await runToEnd(t);
      expectSameMachine(reference, r.m);
      expectSameMachine(reference, t);
    }
  });

  it("wakes a waiting guest with pending events, and refuses memory of the wrong size", () => {
    const m = new Machine(16);
    const state = machineState({ state: "waiting", pending: 4, bindings: [{ port: 2, kind: DeviceKind.NET_RX, ring: 0x5000 }] });
    const mem = randomBytes(16 * PAGE_SIZE, 3);
    m.memory.write(0, new Uint8Array(10)); // dirty before the restore
    restoreMachine(m, state, mem);
    expect(m.state).toBe("running");
    expect(m.pending).toBe(4);
    expect(m.bindings[2]).toEqual({ port: 2, kind: DeviceKind.NET_RX, ring: 0x5000 });
    expect(m.bindings.filter((b) => b !== null)).toHaveLength(1);
    expect(m.memory.dirtyPageCount).toBe(0);
    expect(firstDiff(m.memory.bytes, mem)).toBe(-1);
    expect(m.cpu.regs[0]).toBe(0);
    expect(Array.from(m.cpu.regs.subarray(1, 32))).toEqual(Array.from(state.regs.subarray(1)));
    const idle = new Machine(16);
    restoreMachine(idle, machineState({ state: "waiting", pending: 0 }), mem);
    expect(idle.state).toBe("waiting");
    expect(() => restoreMachine(new Machine(17), state, mem)).toThrow(RangeError);
  });
});

describe("several checkpoints in flight (Remus's pipeline)", () => {
  it("sends them in order, each a delta on the one before, and the secondary ends equal to the primary", async () => {
    const r = rig();
    await r.rep.sync(r.m, SYNC); // the first, full one
    const flights: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      // One word changed in a page the previous checkpoint also carried: its delta base must be that one's page.
      r.m.memory.writeU32(3 * PAGE_SIZE + 4 * i, 0x1000 + i);
      dirtyPages(r.m, [5 + i], 100 + i);
      const c = r.rep.capture(r.m, SYNC);
      flights.push(r.rep.send(c, {}));
    }
    expect(r.rep.flying).toBe(5);
    await Promise.all(flights);
    expect(r.rep.flying).toBe(0);
    expect(r.rep.needsFull).toBe(false);
    expectInSync(r);
  });

  it("a stop-and-wait checkpoint waits for those in flight (idle), never overtakes them", async () => {
    const r = rig();
    await r.rep.sync(r.m, SYNC);
    dirtyPages(r.m, [2], 7);
    const flight = r.rep.send(r.rep.capture(r.m, SYNC), {});
    await expect(r.rep.sync(r.m, SYNC)).rejects.toThrow(InvariantError);
    await flight;
    await r.rep.idle();
    dirtyPages(r.m, [4], 8);
    await r.rep.sync(r.m, SYNC);
    expectInSync(r);
  });

  it("a checkpoint sent out of turn is a broken invariant, loudly — and its pages are not lost: they are dirty again and the next one is full", async () => {
    const r = rig();
    await r.rep.sync(r.m, SYNC);
    dirtyPages(r.m, [6], 9);
    const c1 = r.rep.send(r.rep.capture(r.m, SYNC), {});
    dirtyPages(r.m, [7], 10);
    r.rep.capture(r.m, SYNC); // taken, never sent
    dirtyPages(r.m, [8], 11);
    const c3 = r.rep.capture(r.m, SYNC);
    // c3 before c2: out of turn.
    await expect(r.rep.send(c3, {})).rejects.toThrow(InvariantError);
    expect(r.rep.needsFull).toBe(true);
    expect([...r.m.memory.dirtyPages()]).toContain(8);
    await c1;
    await r.rep.sync(r.m, SYNC); // full
    expectInSync(r);
  });
});

describe("copy-on-write capture: a pipelined checkpoint copies only what the guest changes while it flies", () => {
  it("the secondary gets the pages as they were when taken, though the guest rewrote them before they were sent", async () => {
    const r = rig({ maxFrameBytes: 3 * PAGE_SIZE }, 64);
    await r.rep.sync(r.m, SYNC);
    dirtyPages(r.m, [3, 4, 5, 6, 7, 8, 9, 10], 21);
    const taken = r.m.memory.bytes.slice();
    const c = r.rep.capture(r.m, SYNC);
    expect(c.keptBytes).toBe(0); // taking it copied no page
    // The guest runs on: it rewrites half of the pages, and one it did not touch before.
    dirtyPages(r.m, [4, 6, 8, 10, 40], 22);
    expect(c.keptBytes).toBe(4 * PAGE_SIZE); // 40 was not in the checkpoint
    expect(r.m.memory.keptBytes).toBe(4 * PAGE_SIZE);
    const after = r.m.memory.bytes.slice();
    await r.rep.send(c, {});
    expect(firstDiff(r.replica.memory!, taken)).toBe(-1);
    expect(r.m.memory.keptBytes).toBe(0); // given back once encoded
    expect(firstDiff(r.m.memory.bytes, after)).toBe(-1); // the guest's memory is its own
    await r.rep.sync(r.m, SYNC);
    expectInSync(r);
  });

  it("Remus's epochs in flight: a page in two of them is kept by the older, read live by the newer", async () => {
    const r = rig({}, 32);
    await r.rep.sync(r.m, SYNC);
    const states: Uint8Array[] = [];
    const flights: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) {
      dirtyPages(r.m, [2, 3, 4 + i], 30 + i);
      states.push(r.m.memory.bytes.slice());
      flights.push(r.rep.send(r.rep.capture(r.m, SYNC), {}));
    }
    dirtyPages(r.m, [2, 3, 4, 5, 6, 7], 40); // every page of every epoch changes again
    await Promise.all(flights);
    expect(firstDiff(r.replica.memory!, states[3])).toBe(-1);
    expect(r.m.memory.keptBytes).toBe(0);
  });

  it("a failed checkpoint gives its pages back (dirty again, copies freed); the next one sends them", async () => {
    const r = rig({}, 32);
    await r.rep.sync(r.m, SYNC);
    dirtyPages(r.m, [2, 3], 50);
    const c1 = r.rep.capture(r.m, SYNC);
    dirtyPages(r.m, [3, 4], 51); // 3 is kept for c1
    expect(r.m.memory.keptBytes).toBe(PAGE_SIZE);
    const first = r.sent.length;
    r.fault = (_bytes, i) => (i === first ? { ok: false, code: "unreachable", reason: "test" } : undefined);
    await expect(r.rep.send(c1, {})).rejects.toThrow(SyncRefused);
    expect([...r.m.memory.dirtyPages()]).toEqual([2, 3, 4]);
    expect(r.m.memory.keptBytes).toBe(0);
    r.fault = null;
    await r.rep.sync(r.m, SYNC);
    expectInSync(r);
  });

  it("a held page that turns dirty without a store (a failed checkpoint's pages given back) is handed to its keeper first", () => {
    const m = new Machine(16);
    const kept: number[] = [];
    m.memory.hold({ keep: (p) => kept.push(p) }, [5, 6]);
    m.memory.markDirty([6]);
    expect(kept).toEqual([6]);
    m.memory.writeU32(6 * PAGE_SIZE, 1); // dirty already: the fast path, nothing more to keep
    m.memory.writeU32(5 * PAGE_SIZE, 1);
    expect(kept).toEqual([6, 5]);
    // Holding a dirty page would miss its next store: refused loudly.
    expect(() => m.memory.hold({ keep: () => undefined }, [5])).toThrow(/held while dirty/);
  });

  it("brakes the interpreter once kept copies reach the limit, and lets it run on when the checkpoint is sent", async () => {
    const before = Memory.keepLimitBytes;
    Memory.keepLimitBytes = 4 * PAGE_SIZE;
    try {
      const r = rig({}, 64);
      await r.rep.sync(r.m, SYNC);
      // A guest that stores one word to each of pages 8.. in turn, forever.
      const src = `
        li t0, ${8 * PAGE_SIZE}
        li t1, ${PAGE_SIZE}
      loop:
        sw t1, 0(t0)
        add t0, t0, t1
        j loop
      `;
      r.m.load(buildImage({ asm: src }, 64 * PAGE_SIZE));
      r.m.run(1); // a first store (li): nothing held
      for (let p = 8; p < 40; p++) r.m.memory.writeU32(p * PAGE_SIZE, 0);
      const c = r.rep.capture(r.m, SYNC);
      expect(r.m.memory.braking).toBe(false);
      const ran = r.m.cpu.instret;
      r.m.run(1000);
      // Four stores to held pages (three instructions each), then it stopped after the fourth.
      expect(r.m.memory.braking).toBe(true);
      expect(r.m.cpu.instret - ran).toBeLessThan(3 * 4 + 3);
      expect(r.m.memory.keptBytes).toBe(4 * PAGE_SIZE);
      let unbraked = false;
      const waiting = r.m.memory.unbraked().then(() => (unbraked = true));
      await r.rep.send(c, {});
      await waiting;
      expect(unbraked).toBe(true);
      expect(r.m.memory.braking).toBe(false);
    } finally {
      Memory.keepLimitBytes = before;
    }
  });
});

describe("statistics", () => {
  it("deltaSaved counts each delta entry once, however the checkpoint is cut into frames (an entry that does not fit is encoded again)", async () => {
    const r = rig({ maxFrameBytes: 1 }, 32); // about one entry per frame
    for (let p = 2; p < 10; p++) r.m.memory.writeU32(p * PAGE_SIZE, p);
    await r.rep.sync(r.m, SYNC);
    for (let p = 2; p < 10; p++) r.m.memory.writeU32(p * PAGE_SIZE + 8, p);
    const before = r.sent.length;
    const stats = await r.rep.send(r.rep.capture(r.m, SYNC), {});
    let onWire = 0;
    for (const b of r.sent.slice(before)) for (const e of decodeFrame(b).entries) if (e.enc === Enc.DELTA) onWire += PAGE_SIZE - e.data.length;
    expect(stats.frames).toBeGreaterThanOrEqual(8);
    expect(onWire).toBeGreaterThan(0);
    expect(stats.deltaSaved).toBe(onWire);
    expectInSync(r);
  });
});
