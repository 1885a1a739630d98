/**
 * Guest physical memory with Xen-style log-dirty tracking.
 *
 * Every store must mark its 4 KiB page dirty, and the interpreter must not pay
 * for that on every store. So each page carries one byte of `storeFlags`, and
 * a store only leaves the fast path when its page's byte is non-zero:
 *   CLEAN — the page is not yet in the dirty set (first store since the last sync);
 *   CODE  — the interpreter holds pre-decoded instructions for the page, which a
 *           store must invalidate (self-modifying code, or a loader writing code).
 * After the first store to a data page its byte is 0 and stores cost one load
 * and one compare. The dirty set itself is a list of page numbers in store
 * order, so reading and clearing it costs O(dirty pages), never O(memory).
 *
 * Copy-on-write for checkpoints in flight: a pipelined checkpoint takes its
 * pages without copying them and reads them from live memory as it sends
 * them. Each page it holds is CLEAN (it has just left the dirty set), so the
 * guest's first store to it takes the slow path, which first hands the page
 * as it was to its keeper (`hold`). The copies kept this way are what a
 * checkpoint in flight costs in RAM: once they reach KEEP_LIMIT_BYTES the
 * memory `braking` flag stops the interpreter after its store, and the host
 * runs the guest on only once checkpoints in flight have landed.
 */
import { mutations } from "../protocol/mutations.ts";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const MIN_PAGES = 16;
export const MAX_PAGES = 16384;
export const DEFAULT_PAGES = 256;

export const FLAG_CLEAN = 1;
export const FLAG_CODE = 2;

/** RAM that pages kept for checkpoints in flight may take before the guest is held back (a 64 MiB guest then needs ≤ 80 MiB, not 128). */
export const KEEP_LIMIT_BYTES = 16 << 20;

// The word view (words) reads and writes in the host's byte order; the guest's is little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("guest memory needs a little-endian host");

/** A checkpoint in flight that reads some pages from live memory: it must be given a page before it changes. */
export interface PageKeeper {
  keep(page: number, before: Uint8Array): void;
}

/**
 * A page's decoded cache: two Int32 per instruction slot, packed (op, rd,
 * rs1, rs2) and the immediate, then from BLOCKS one Int32 per slot: how many
 * instructions run from that slot to the end of its basic block (0: not
 * known yet). A known length implies every slot it covers is decoded and
 * known too, which is what `forgetCode` keeps true.
 */
export const BLOCKS = (PAGE_SIZE / 4) * 2;
const CACHE_INTS_PER_PAGE = BLOCKS + PAGE_SIZE / 4;

export class Memory {
  /** The keep limit of memories made from now on (the simulator lowers it, so its small guests meet the brake). */
  static keepLimitBytes = KEEP_LIMIT_BYTES;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** The same bytes as 32-bit words, for the interpreter's aligned loads and stores (guest memory is little-endian, as every host this runs on is: checked below). */
  readonly words: Int32Array;
  readonly pages: number;
  readonly size: number;
  /** Per page: FLAG_CLEAN | FLAG_CODE; 0 means a store needs no bookkeeping. */
  readonly storeFlags: Uint8Array;
  /** Pre-decoded instructions of pages that have been executed (see cpu.ts). */
  private readonly codeCache: (Int32Array | undefined)[];
  private readonly dirtyList: Int32Array;
  private dirtyCount = 0;
  /**
   * Pages that left the dirty set since the host last saved the guest to its
   * own storage (an idle save: src/protocol/idle-save.ts): a checkpoint took
   * them, but the save has not. Kept in O(pages cleared), like the dirty set.
   */
  private readonly unsavedFlags: Uint8Array;
  private readonly unsavedList: Int32Array;
  private unsavedCount = 0;
  /** Per page: the checkpoint in flight that reads it from live memory, if any (copy-on-write). */
  private readonly keepers: (PageKeeper | undefined)[];
  /** Bytes of pages copied for keepers and not yet given back (`forget`). */
  keptBytes = 0;
  /** Kept copies reached KEEP_LIMIT_BYTES: the interpreter stops after the store that got there. */
  braking = false;
  readonly keepLimitBytes = Memory.keepLimitBytes;
  private readonly unbrake: (() => void)[] = [];

  /** `bytes`, if given, becomes the memory itself (no copy, if word-aligned in its buffer): a takeover adopts its replica this way. */
  constructor(pages: number, bytes?: Uint8Array) {
    if (!Number.isInteger(pages) || pages < MIN_PAGES || pages > MAX_PAGES) {
      throw new RangeError(`memory must be ${MIN_PAGES}..${MAX_PAGES} pages, got ${pages}`);
    }
    this.pages = pages;
    this.size = pages * PAGE_SIZE;
    if (bytes && bytes.length !== this.size) throw new RangeError(`memory of ${pages} pages needs ${this.size} bytes, got ${bytes.length}`);
    // Adopted bytes at an odd offset in their buffer are copied: the word views below need it aligned.
    this.bytes = bytes ? (bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes)) : new Uint8Array(this.size);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.words = new Int32Array(this.bytes.buffer, this.bytes.byteOffset, this.size >>> 2);
    this.storeFlags = new Uint8Array(pages).fill(FLAG_CLEAN);
    this.codeCache = packedArray<Int32Array>(pages);
    this.dirtyList = new Int32Array(pages);
    this.unsavedFlags = new Uint8Array(pages);
    this.unsavedList = new Int32Array(pages);
    this.keepers = packedArray<PageKeeper>(pages);
  }

  /** Slow path of a store to [addr, addr+len): mark pages dirty, drop stale decoded code. */
  touch(addr: number, len: number): void {
    if (len <= 0) return;
    const end = addr + len;
    const last = (end - 1) >>> PAGE_SHIFT;
    for (let p = addr >>> PAGE_SHIFT; p <= last; p++) {
      const f = this.storeFlags[p];
      if (f === 0) continue;
      if (f & FLAG_CLEAN) {
        // A held page is CLEAN until this first store: its keeper gets it as it was.
        if (this.keepers[p] !== undefined && !mutations.keepNothing) this.keepFor(p);
        this.dirtyList[this.dirtyCount++] = p;
        this.storeFlags[p] = f & ~FLAG_CLEAN;
      }
      // Code and data often share a page (.data follows .text), so only the
      // decoded words the store overlaps are dropped; the page stays CODE.
      if (f & FLAG_CODE) {
        const base = p << PAGE_SHIFT;
        const from = (Math.max(addr, base) - base) >>> 2;
        const to = ((Math.min(end, base + PAGE_SIZE) - base + 3) >>> 2);
        forgetCode(this.codeCache[p]!, from, to);
      }
    }
  }

  private keepFor(p: number): void {
    const k = this.keepers[p]!;
    this.keepers[p] = undefined;
    k.keep(p, this.bytes.slice(p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT));
    this.keptBytes += PAGE_SIZE;
    if (this.keptBytes >= this.keepLimitBytes) this.braking = true;
  }

  /**
   * `keeper` reads these pages from live memory until it lets go (`letGo`):
   * each must be CLEAN (just taken off the dirty set), so its next store
   * hands it over first. A later checkpoint's hold replaces an earlier one's:
   * a page can be in it only if the guest stored to it since, so the earlier
   * one has its copy already.
   */
  hold(keeper: PageKeeper, pages: ArrayLike<number>): void {
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if ((this.storeFlags[p] & FLAG_CLEAN) === 0) throw new Error(`page ${p} is held while dirty: its next store would not be seen`);
      this.keepers[p] = keeper;
    }
  }

  /** Does `keeper` still read page `p` from live memory (unchanged since it was held)? */
  holds(keeper: PageKeeper, p: number): boolean {
    return this.keepers[p] === keeper;
  }

  /** `keeper` is done with these pages (sent, or failed); `keptBytes` of its copies are freed. */
  letGo(keeper: PageKeeper, pages: ArrayLike<number>, keptBytes: number): void {
    for (let i = 0; i < pages.length; i++) if (this.keepers[pages[i]] === keeper) this.keepers[pages[i]] = undefined;
    this.keptBytes -= keptBytes;
    if (this.keptBytes < 0) throw new Error(`kept bytes went negative (${this.keptBytes})`);
    this.braking = this.keptBytes >= this.keepLimitBytes;
    if (!this.braking) for (const resolve of this.unbrake.splice(0)) resolve();
  }

  /** Resolves once memory is not braking: checkpoints in flight have let go of enough kept copies. */
  unbraked(): Promise<void> {
    if (!this.braking) return Promise.resolve();
    return new Promise((resolve) => this.unbrake.push(resolve));
  }

  /** The decoded-instruction cache of a page, registering it for invalidation. */
  codePage(page: number): Int32Array {
    let c = this.codeCache[page];
    if (c === undefined) this.codeCache[page] = c = new Int32Array(CACHE_INTS_PER_PAGE);
    this.storeFlags[page] |= FLAG_CODE;
    return c;
  }

  /** Bounds check for a host-side access (backends, loaders, the API). */
  contains(addr: number, len: number): boolean {
    return Number.isInteger(addr) && Number.isInteger(len) && addr >= 0 && len >= 0 && addr + len <= this.size;
  }

  /** A host-side write (a backend's response, a received packet, a disk read, a loader). */
  write(addr: number, data: Uint8Array): void {
    if (!this.contains(addr, data.length)) throw new RangeError(`write of ${data.length} bytes at ${addr} is outside memory`);
    this.touch(addr, data.length);
    this.bytes.set(data, addr);
  }

  writeU32(addr: number, value: number): void {
    this.touch(addr, 4);
    this.view.setUint32(addr, value >>> 0, true);
  }

  readU32(addr: number): number {
    return this.view.getUint32(addr, true);
  }

  /** A copy of guest bytes, so the caller never aliases live memory. */
  read(addr: number, len: number): Uint8Array {
    if (!this.contains(addr, len)) throw new RangeError(`read of ${len} bytes at ${addr} is outside memory`);
    return this.bytes.slice(addr, addr + len);
  }

  /** A view of one page's live bytes (no copy: encode it before the guest runs again). */
  page(p: number): Uint8Array {
    return this.bytes.subarray(p << PAGE_SHIFT, (p + 1) << PAGE_SHIFT);
  }

  get dirtyPageCount(): number {
    return this.dirtyCount;
  }

  /** Page numbers dirtied since the last clear, ascending. */
  dirtyPages(): Int32Array {
    return this.dirtyList.slice(0, this.dirtyCount).sort();
  }

  isDirty(page: number): boolean {
    return (this.storeFlags[page] & FLAG_CLEAN) === 0;
  }

  /**
   * Empty the dirty set, in O(dirty pages): each listed page is CLEAN again, so
   * its next store puts it back in the set. The replicator calls this as soon
   * as it has taken the list, before the checkpoint is sent; if the sync fails
   * it puts the pages back with `markDirty`.
   */
  clearDirty(): void {
    for (let i = 0; i < this.dirtyCount; i++) {
      const p = this.dirtyList[i];
      this.storeFlags[p] |= FLAG_CLEAN;
      if (this.unsavedFlags[p] === 0) {
        this.unsavedFlags[p] = 1;
        this.unsavedList[this.unsavedCount++] = p;
      }
    }
    this.dirtyCount = 0;
  }

  /**
   * Pages changed since the last call (dirty now, or cleared from the dirty
   * set since), ascending; starts the count again. The dirty set is left as
   * it is: replication still needs it.
   */
  takeUnsaved(): Int32Array {
    const out = new Int32Array(this.unsavedCount + this.dirtyCount);
    let n = 0;
    for (let i = 0; i < this.unsavedCount; i++) out[n++] = this.unsavedList[i];
    for (let i = 0; i < this.dirtyCount; i++) {
      const p = this.dirtyList[i];
      // A page both cleared and dirtied again since is listed once.
      if (this.unsavedFlags[p] === 0) {
        this.unsavedFlags[p] = 1;
        out[n++] = p;
      }
    }
    for (let i = 0; i < n; i++) this.unsavedFlags[out[i]] = 0;
    this.unsavedCount = 0;
    return out.subarray(0, n).sort();
  }

  /** Mark pages dirty again, e.g. when the sync that carried them failed. */
  markDirty(pages: ArrayLike<number>): void {
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if (this.storeFlags[p] & FLAG_CLEAN) {
        // Its next store will not take the slow path: a checkpoint still reading it live gets its copy now.
        if (this.keepers[p] !== undefined) this.keepFor(p);
        this.dirtyList[this.dirtyCount++] = p;
        this.storeFlags[p] &= ~FLAG_CLEAN;
      }
    }
  }
}

/**
 * Drop the decoded instructions in slots [from, to) of a page's cache, and
 * the block lengths that cover them: theirs, and those of earlier slots whose
 * block runs into them (walking back until a block ends before `from`).
 */
function forgetCode(cache: Int32Array, from: number, to: number): void {
  // Data beside code (.data on a page with .text): nothing decoded is written, and nothing
  // runs into it — a fused pair's second slot is always decoded. The common case, kept cheap.
  let decoded = false;
  for (let s = from; s < to && !decoded; s++) decoded = cache[s * 2] !== 0;
  if (!decoded) return;
  // The slot before may be fused with the first one written (cpu.ts, fuse): it goes too.
  if (from > 0) from--;
  cache.fill(0, from * 2, to * 2);
  cache.fill(0, BLOCKS + from, BLOCKS + to);
  for (let s = from - 1; s >= 0 && cache[BLOCKS + s] > from - s; s--) cache[BLOCKS + s] = 0;
}

/**
 * An array of `n` undefined slots that holds objects from the start, whatever
 * `n`: `new Array(n)` is a holey array of small integers, which changes its
 * map at its first object, and the interpreter's optimised code, built for
 * one map, is thrown away at each new guest's first page.
 */
function packedArray<T>(n: number): (T | undefined)[] {
  const a: (T | undefined)[] = [];
  for (let i = 0; i < n; i++) a.push(undefined);
  return a;
}

/**
 * Are the bytes all zero (a page that need not be stored or sent, a chunk of
 * an image left out)? By words over the aligned middle: a 64 MiB `.space` is
 * 16M reads, not 64M.
 */
export function isZero(b: Uint8Array): boolean {
  let i = 0;
  const n = b.byteLength;
  while (i < n && ((b.byteOffset + i) & 3) !== 0) if (b[i++] !== 0) return false;
  // All of it was before the first word boundary (a short view at an odd offset): no word view to make there.
  if (i === n) return true;
  const w = new Int32Array(b.buffer, b.byteOffset + i, (n - i) >>> 2);
  for (let k = 0; k < w.length; k++) if (w[k] !== 0) return false;
  for (i += w.length << 2; i < n; i++) if (b[i] !== 0) return false;
  return true;
}
