/**
 * Delta compression of a page against the version last sent to the
 * secondary: XOR the two (unchanged bytes become zero), then encode the XOR
 * as runs — `[zeros u16][literal length u16][literal bytes]…` — until the
 * page is covered. A guest that changes a counter in a page costs a few
 * bytes instead of 4 KiB. The secondary holds every page's last version, so
 * it can always undo the XOR.
 */
const MAX_RUN = 0xffff;

/**
 * Encode `next` against `prev` (same length). Returns null as soon as the
 * delta could not be smaller than the page: a page rewritten whole costs one
 * pass and no output. Runs are found a 32-bit word at a time.
 */
export function encodeDelta(prev: Uint8Array, next: Uint8Array): Uint8Array | null {
  const n = next.length;
  if ((n & 3) !== 0 || (prev.byteOffset & 3) !== 0 || (next.byteOffset & 3) !== 0) return encodeBytes(prev, next);
  const pw = new Int32Array(prev.buffer, prev.byteOffset, n >> 2);
  const nw = new Int32Array(next.buffer, next.byteOffset, n >> 2);
  const words = n >> 2;
  const out = new Uint8Array(n);
  let o = 0;
  let i = 0;
  while (i < words) {
    let z = i;
    while (z < words && pw[z] === nw[z] && z - i < MAX_RUN >> 2) z++;
    if (z === words) break;
    let l = z;
    // A literal ends at the first run of 2+ equal words: a shorter run costs more as a new header.
    while (l < words && l - z < MAX_RUN >> 2) {
      if (pw[l] !== nw[l]) l++;
      else if (l + 1 < words && pw[l + 1] === nw[l + 1]) break;
      else if (l + 1 >= words) break;
      else l++;
      if (o + 4 + ((l - z) << 2) >= n) return null;
    }
    const zeros = (z - i) << 2;
    const lit = (l - z) << 2;
    if (o + 4 + lit >= n) return null;
    out[o++] = zeros & 0xff;
    out[o++] = zeros >>> 8;
    out[o++] = lit & 0xff;
    out[o++] = lit >>> 8;
    for (let k = z << 2, e = l << 2; k < e; k++) out[o++] = prev[k] ^ next[k];
    i = l;
  }
  return out.slice(0, o);
}

/** The same encoding, a byte at a time, for unaligned or odd-sized input. */
function encodeBytes(prev: Uint8Array, next: Uint8Array): Uint8Array | null {
  const n = next.length;
  const out = new Uint8Array(n);
  let o = 0;
  let i = 0;
  while (i < n) {
    let z = i;
    while (z < n && prev[z] === next[z] && z - i < MAX_RUN) z++;
    if (z === n) break;
    let l = z;
    while (l < n && l - z < MAX_RUN) {
      if (prev[l] === next[l]) {
        let e = l;
        while (e < n && e - l < 4 && prev[e] === next[e]) e++;
        if (e - l >= 4 || e === n) break;
        l = e;
      } else l++;
    }
    if (o + 4 + (l - z) >= n) return null;
    out[o++] = (z - i) & 0xff;
    out[o++] = (z - i) >>> 8;
    out[o++] = (l - z) & 0xff;
    out[o++] = (l - z) >>> 8;
    for (let k = z; k < l; k++) out[o++] = prev[k] ^ next[k];
    i = l;
  }
  return out.slice(0, o);
}

/** Apply a delta to `page` in place. Throws on a malformed delta (it never writes past the page). */
export function applyDelta(page: Uint8Array, delta: Uint8Array): void {
  let i = 0;
  let d = 0;
  while (d < delta.length) {
    if (d + 4 > delta.length) throw new RangeError("delta: truncated run header");
    const zeros = delta[d] | (delta[d + 1] << 8);
    const lit = delta[d + 2] | (delta[d + 3] << 8);
    d += 4;
    i += zeros;
    if (i + lit > page.length || d + lit > delta.length) throw new RangeError("delta: run past the end of the page");
    for (let k = 0; k < lit; k++) page[i + k] ^= delta[d + k];
    i += lit;
    d += lit;
  }
  if (i > page.length) throw new RangeError("delta: run past the end of the page");
}

/**
 * The primary's memory of what it last sent, for the pages it sent most
 * recently (bounded, so a 64 MiB guest does not double its footprint). A page
 * not remembered is simply sent whole.
 */
export class PageHistory {
  private readonly pages = new Map<number, Uint8Array>();

  constructor(readonly capacity = 1024) {}

  get(page: number): Uint8Array | undefined {
    return this.pages.get(page);
  }

  /**
   * Remember `data` as the version of `page` the secondary now holds. The
   * history takes it as it is (the caller passes a copy of its own) and never
   * changes it: a checkpoint taken earlier may still hold the old version as
   * its delta base, to be encoded later.
   */
  set(page: number, data: Uint8Array): void {
    if (this.capacity <= 0) return; // remembers nothing (delta compression off)
    // Map iteration order is insertion order, the oldest first: a page set again moves to the end.
    if (!this.pages.delete(page) && this.pages.size >= this.capacity) {
      const oldest = this.pages.keys().next().value as number;
      this.pages.delete(oldest);
    }
    this.pages.set(page, data);
  }

  clear(): void {
    this.pages.clear();
  }

  get size(): number {
    return this.pages.size;
  }
}
