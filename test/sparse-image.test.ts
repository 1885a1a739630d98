/**
 * Sparse images (#11, item 3): zeros cost nothing to build or send. A
 * segment travels as the pieces of it that are not zero; loaded into zeroed
 * memory, the pieces must give back exactly the segment.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sparseSegment, ZERO_GAP_BYTES } from "../src/image/load.ts";
import type { Segment } from "../src/image/image.ts";
import { isZero } from "../src/guest/memory.ts";
import { runs } from "./helpers/fuzz.ts";

/** The segment as memory holds it once its pieces are loaded (memory starts zeroed). */
function load(pieces: Segment[], base: number, size: number): Uint8Array {
  const mem = new Uint8Array(size);
  for (const p of pieces) mem.set(p.data, p.addr - base);
  return mem;
}

/** Data with runs: zeros, random bytes, a lone byte, of random lengths (some of several pages). */
const data = fc
  .array(
    fc.oneof(
      fc.integer({ min: 1, max: 3 * ZERO_GAP_BYTES }).map((n) => new Uint8Array(n)),
      fc.uint8Array({ minLength: 1, maxLength: 600 }),
      fc.integer({ min: 1, max: 255 }).map((b) => Uint8Array.of(b)),
    ),
    { maxLength: 12 },
  )
  .map((parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  });

describe("isZero", () => {
  it("a view shorter than the distance to its first word boundary (found by the property below in CI: a RangeError)", () => {
    const backing = new Uint8Array(8);
    expect(isZero(backing.subarray(1, 3))).toBe(true);
    backing[2] = 5;
    expect(isZero(backing.subarray(1, 3))).toBe(false);
    expect(isZero(backing.subarray(3, 3))).toBe(true);
  });
});

describe("sparseSegment", () => {
  it("property: the pieces, loaded into zeroed memory, give back the segment; no piece carries an all-zero chunk; the last keeps its end", () => {
    fc.assert(
      fc.property(data, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 2 * ZERO_GAP_BYTES }), (bytes, offset, extra) => {
        // A view at an odd offset too: words cannot be read there.
        const backing = new Uint8Array(bytes.length + offset);
        backing.set(bytes, offset);
        const seg: Segment = { addr: 0x1000, data: backing.subarray(offset), size: bytes.length + extra };
        const pieces = sparseSegment(seg);
        expect(load(pieces, seg.addr, seg.size)).toEqual(load([{ ...seg, data: bytes }], seg.addr, seg.size));
        const last = pieces.at(-1)!;
        expect(last.addr + last.size).toBe(seg.addr + seg.size);
        for (let i = 0; i < pieces.length; i++) {
          const p = pieces[i];
          // Copies, not views of the segment's buffer (a message would carry all of it).
          if (p.data.length > 0) expect(p.data.buffer).not.toBe(backing.buffer);
          if (i > 0) expect(p.addr).toBeGreaterThanOrEqual(pieces[i - 1].addr + pieces[i - 1].data.length + ZERO_GAP_BYTES - 3);
          if (p.data.length > 0) expect(p.data.at(-1)).not.toBe(0);
          for (let at = 0; at + ZERO_GAP_BYTES <= p.data.length; at += ZERO_GAP_BYTES) {
            // A chunk of the segment's grid inside a piece is never all zero.
            const grid = p.addr - seg.addr + at;
            if (grid % ZERO_GAP_BYTES === 0) expect(p.data.subarray(at, at + ZERO_GAP_BYTES).some((b) => b !== 0)).toBe(true);
          }
        }
        const sent = pieces.reduce((n, p) => n + p.data.length, 0);
        expect(sent).toBeLessThanOrEqual(bytes.length);
      }),
      { numRuns: runs(300) },
    );
  });

  it("40 MiB of zeros between two strings travels as 6 bytes, quickly", () => {
    const d = new Uint8Array(40 << 20);
    d.set([75, 69], 0);
    d.set([77, 65, 82, 73], d.length - 4);
    const t0 = performance.now();
    const pieces = sparseSegment({ addr: 4, data: d, size: d.length });
    expect(performance.now() - t0).toBeLessThan(500);
    expect(pieces.map((p) => [p.addr, p.data.length])).toEqual([[4, 2], [4 + d.length - 4, 4]]);
  });

  it("an all-zero segment is one piece with no data that keeps the segment's size", () => {
    expect(sparseSegment({ addr: 64, data: new Uint8Array(10_000), size: 12_000 })).toEqual([{ addr: 64, data: new Uint8Array(0), size: 12_000 }]);
  });
});
