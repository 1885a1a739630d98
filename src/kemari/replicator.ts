/**
 * The primary's side of Kemari: at each event, encode what changed since the
 * last acknowledged checkpoint and send it to the secondary, returning only
 * once the secondary holds all of it.
 *
 * Pages are taken off the dirty set when they are encoded, and encoded
 * straight from guest memory: nothing writes it during a sync (the runner
 * serialises the CPU, the backends and inbound packets), so a checkpoint needs
 * no copy of what it sends. If the transfer fails the pages are marked dirty
 * again, so nothing is ever lost from the next one.
 *
 * Or captured (encoded and copied) for a pipeline, so the guest runs on while
 * it crosses; Remus keeps several such checkpoints in flight, sent in order
 * (docs/design.md, "Remus: pipelined epochs").
 */
import type { Output } from "../devices/backend.ts";
import type { Machine } from "../guest/machine.ts";
import { isZero, PAGE_SIZE, type PageKeeper } from "../guest/memory.ts";
import { Enc, Space, encodeFrame, machineBytes, ENTRY_HEADER_BYTES, HEADER_BYTES, TRAILER_BYTES, type Entry, type Frame } from "./checkpoint.ts";
import { PageHistory, encodeDelta } from "./delta.ts";
import { captureMachine } from "./state.ts";
import { mutations } from "../protocol/mutations.ts";
import { MAX_LISTED_PAGES } from "../events/messages.ts";

/** The secondary's answer to one frame. */
export type SyncReply =
  | { ok: true; seq: number; committed: boolean }
  | { ok: false; code: "corrupt" | "out-of-order" | "superseded" | "not-secondary" | "unreachable"; reason: string };

export interface SecondaryLink {
  send(frame: Uint8Array): Promise<SyncReply>;
  /**
   * Before a checkpoint's next frame is encoded: let queued requests in (a
   * timer turn where every object shares one thread). Absent: go straight on.
   */
  pace?(): Promise<void>;
}

/** Protocol steps at which a fault can be injected (see faults.ts). */
export type SyncStep = "before-transfer" | "mid-transfer" | "after-ack";

export interface SyncOptions {
  /** Send everything (to a fresh secondary): memory, and the disk's written sectors. */
  full?: boolean;
  /** Disk sectors to carry: the whole disk in a full checkpoint, an epoch's writes in Remus. */
  sectors?: Iterable<[number, Uint8Array]>;
  diskSectors: number;
  /** Remus: the outputs the epoch holds back, carried so a secondary that takes over can release them. */
  outputs?: Output[];
  /** Called at each protocol step; a fault injector may crash the host here. */
  at?: (step: SyncStep) => Promise<void> | void;
  /** Split into at least this many frames (so a mid-transfer fault has a middle). */
  minFrames?: number;
  /** Told the checkpoint's seq once it is taken, while the machine is exactly its state. */
  captured?: (seq: number) => void;
}

export interface SyncStats {
  seq: number;
  full: boolean;
  pages: number;
  /** Bytes of guest memory in the pages sent. */
  dirtyBytes: number;
  /** Bytes on the wire, all frames. */
  sentBytes: number;
  /** Bytes delta compression saved against sending changed pages whole. */
  deltaSaved: number;
  frames: number;
  /** The page numbers sent, ascending (the first MAX_LISTED_PAGES: enough for a picture). */
  sentPages: number[];
  /** The guest's instruction count the checkpoint holds. */
  instructions: number;
}

/**
 * A broken invariant of the replicator's own (a checkpoint out of turn, one
 * taken while another is in flight): a bug, not a failed link — nothing
 * retries it (Protection rethrows it), so the simulator reports it.
 */
export class InvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvariantError";
  }
}

export class SyncRefused extends Error {
  constructor(readonly code: Extract<SyncReply, { ok: false }>["code"], readonly reason: string) {
    super(`secondary refused the checkpoint (${code}): ${reason}`);
    this.name = "SyncRefused";
  }
}

/**
 * A checkpoint taken and not yet acknowledged. It is encoded frame by frame
 * as it goes (`nextFrame`), its pages read from guest memory: stop-and-wait,
 * nothing writes memory meanwhile; pipelined, the guest runs on and the
 * checkpoint holds its pages copy-on-write (memory.ts), so a store to one
 * first gives it the page as it was (`keep`). Taking one copies nothing but
 * the pages to remember as delta bases.
 */
export class Captured implements PageKeeper {
  /** Pages the guest has stored to since this was taken: their contents as taken. */
  private readonly kept = new Map<number, Uint8Array>();
  /** Next page (then tail entry) to encode. */
  private cursor = 0;
  private released = false;
  private committed = false;
  /** Bytes delta compression saved, counted for the entries that went into frames. */
  deltaSaved = 0;
  frames = 0;

  constructor(
    readonly replicator: Replicator,
    readonly memory: Machine["memory"],
    readonly head: Omit<Frame, "part" | "machine" | "entries">,
    readonly pages: Int32Array,
    /** Per page, the version the secondary holds when this arrives (its delta base), fixed when taken; null: send pages whole. */
    private readonly bases: (Uint8Array | undefined)[] | null,
    /** Disk sectors and outputs, after the pages. */
    private readonly tail: Entry[],
    private readonly machine: Frame["machine"],
    private readonly minFrames: number,
    /** Pages to remember as the secondary's versions (delta bases) once acknowledged (stop-and-wait; a pipelined one remembered them when taken). */
    readonly sent: [number, Uint8Array][],
    /** Taken for a pipeline (held copy-on-write): the guest runs on meanwhile. */
    readonly pipelined: boolean,
  ) {
    if (pipelined) memory.hold(this, pages);
  }

  get seq(): number {
    return this.head.seq;
  }

  /** The guest's instruction count as taken. */
  get instructions(): number {
    return this.machine?.instret ?? 0;
  }

  get full(): boolean {
    return this.head.full;
  }

  /** Its size before encoding (pages whole, sectors, outputs): what the window of checkpoints in flight counts. */
  get bytes(): number {
    let n = this.pages.length * PAGE_SIZE;
    for (const e of this.tail) n += e.data.length;
    return n;
  }

  /** Bytes of pages copied because the guest stored to them while this was in flight. */
  get keptBytes(): number {
    return this.kept.size * PAGE_SIZE;
  }

  /** The memory hands over a page the guest is about to change. */
  keep(page: number, before: Uint8Array): void {
    this.kept.set(page, before);
  }

  /** Page `p` as it was when this was taken. */
  private page(p: number): Uint8Array {
    const k = this.kept.get(p);
    if (k) return k;
    if (this.pipelined && !this.memory.holds(this, p)) throw new InvariantError(`checkpoint ${this.seq}: page ${p} changed in memory and was not kept`);
    return this.memory.page(p);
  }

  /** The commit frame (the last, with the machine state) is encoded. */
  get done(): boolean {
    return this.committed;
  }

  /**
   * Encode the next frame: entries until the next would pass `limit` (at
   * least one), the machine state on the last. Pages are encoded against
   * their bases as they go; a zero page is sent as such (left out of a full
   * checkpoint, which starts from zeros).
   */
  nextFrame(limit: number): Uint8Array {
    const total = this.pages.length + this.tail.length;
    const reserve = HEADER_BYTES + machineBytes(this.machine) + TRAILER_BYTES;
    // So a mid-transfer fault has a middle: the frames before the last take half of what is left.
    const cap = this.frames + 1 < this.minFrames ? this.cursor + ((total - this.cursor) >> 1) : total;
    const entries: Entry[] = [];
    let size = reserve;
    while (this.cursor < cap) {
      // An entry that does not fit is encoded again for the next frame, not kept: a raw page is a
      // view of live memory, which the guest may change (the page then kept) before that frame goes.
      const e = this.entry(this.cursor);
      if (e) {
        const n = ENTRY_HEADER_BYTES + e.data.length;
        if (entries.length > 0 && size + n > limit) break;
        entries.push(e);
        size += n;
        if (e.enc === Enc.DELTA && e.space === Space.PAGE) this.deltaSaved += PAGE_SIZE - e.data.length;
      }
      this.cursor++;
    }
    const last = this.cursor >= total && this.frames + 1 >= this.minFrames;
    const frame = encodeFrame({ ...this.head, part: this.frames++, machine: last ? this.machine : null, entries });
    // Everything is encoded (into frames that own their bytes): memory may change freely now.
    if (last) {
      this.committed = true;
      this.release();
    }
    return frame;
  }

  /** The entry at `i` (null: a zero page a full checkpoint leaves out). */
  private entry(i: number): Entry | null {
    if (i >= this.pages.length) return this.tail[i - this.pages.length];
    const p = this.pages[i];
    const page = this.page(p);
    if (isZero(page)) return this.full ? null : { space: Space.PAGE, index: p, enc: Enc.ZERO, data: EMPTY };
    const prev = this.bases?.[i];
    const d = prev && worthADelta(prev, page) ? encodeDelta(prev, page) : null;
    if (!d) return { space: Space.PAGE, index: p, enc: Enc.RAW, data: page };
    return { space: Space.PAGE, index: p, enc: Enc.DELTA, data: d };
  }

  /** Done with guest memory (all encoded, or failed): the pages it held are the guest's alone again. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.pipelined) this.memory.letGo(this, this.pages, this.keptBytes);
    this.kept.clear();
  }
}

/**
 * A checkpoint goes out in frames of at most DEFAULT_MAX_FRAME_BYTES. Small
 * frames keep the thread free: locally every object shares one, and each
 * frame (the primary encoding it, the secondary applying and storing it)
 * holds it. With 1 MiB frames a status request waited 113–145 ms (median)
 * behind a 64 MiB guest checkpointing at every event; with 256 KiB, 48–53 ms
 * (512 KiB: 73–82). A little over 256 KiB, so that a sync of 64 dirty pages
 * (their bytes, entry headers and the frame's header) is still one frame.
 *
 * Frames are acknowledged in order, and a window of them may be on their way
 * at once (`windowBytesFor`): one frame with no modelled link, the link's
 * bandwidth-delay product across one (up to 8 MiB), so that a large
 * checkpoint fills the link instead of waiting a round trip per frame. (It
 * used to send one frame per round trip, each the bandwidth-delay product:
 * an 8 MiB frame held the thread, and other guests' requests, for up to
 * 265 ms.)
 */
export const DEFAULT_MAX_FRAME_BYTES = (256 + 4) << 10;
export const MAX_WINDOW_BYTES = 8 << 20;

/** Bytes of a checkpoint's frames that may be unacknowledged at once over a modelled link (null: none): its bandwidth-delay product (bandwidth null: not limited), between one frame and 8 MiB. */
export function windowBytesFor(link: { rttMs: number; mbps: number | null } | null): number {
  if (!link || link.rttMs === 0) return DEFAULT_MAX_FRAME_BYTES;
  const bdp = link.mbps === null ? MAX_WINDOW_BYTES : ((link.mbps * 1e6) / 8) * (link.rttMs / 1000);
  return Math.round(Math.min(MAX_WINDOW_BYTES, Math.max(DEFAULT_MAX_FRAME_BYTES, bdp)));
}

export class Replicator {
  /** Sequence number of the last checkpoint the secondary acknowledged (monotonic: a full checkpoint continues it). */
  seq = 0;
  /**
   * The next checkpoint must be full: nothing sent yet, or the secondary's
   * state is uncertain (it answered out of order, or a commit frame went out
   * and no answer came back).
   */
  needsFull = true;
  readonly history: PageHistory;
  /** Checkpoints on their way, each settled (acknowledged or failed) when it resolves (Remus may have several: see Primary). */
  private readonly sends = new Set<Promise<void>>();
  /** The seq of the last checkpoint taken, and of the last one sent; while any is in flight, the next one follows them. */
  private taken = 0;
  private lastSent = 0;
  /** Sends go out in seq order, the frames of one before any of the next: resolves once the last one's final frame is out. */
  private issued: Promise<void> = Promise.resolve();
  readonly totals = { syncs: 0, pages: 0, dirtyBytes: 0, sentBytes: 0, deltaSaved: 0 };

  constructor(
    readonly generation: number,
    private readonly link: SecondaryLink,
    private readonly options: { maxFrameBytes?: number; windowBytes?: number; delta?: boolean; historyPages?: number } = {},
  ) {
    this.history = new PageHistory(options.delta === false ? 0 : (options.historyPages ?? 1024));
  }

  /**
   * Stop-and-wait: encode what changed and send it, the guest stopped
   * throughout — so pages are encoded straight from memory, frame by frame,
   * and a full checkpoint of a 64 MiB guest needs no second 64 MiB.
   */
  async sync(m: Machine, opts: SyncOptions): Promise<SyncStats> {
    return this.send(this.prepare(m, opts, false), opts);
  }

  /**
   * Pipelined: take the checkpoint now, encoded and copied, so the guest can
   * run on while `send` carries it. Only incremental checkpoints are taken
   * this way (a full one is sent stop-and-wait: see Primary).
   */
  capture(m: Machine, opts: SyncOptions): Captured {
    return this.prepare(m, opts, true);
  }

  /** How many checkpoints are on their way. */
  get flying(): number {
    return this.sends.size;
  }

  private prepare(m: Machine, opts: SyncOptions, copy: boolean): Captured {
    // Stop-and-wait sends its pages straight from memory: nothing may be in flight behind or ahead of it.
    if (!copy && this.flying > 0) throw new InvariantError("a stop-and-wait checkpoint was taken while another is in flight");
    // A pipelined one follows those in flight; its deltas are against their pages, so it is never full.
    if (copy && this.flying > 0 && (this.needsFull || opts.full)) throw new InvariantError("a full checkpoint was taken while another is in flight");
    const full = opts.full === true || this.needsFull;
    const mem = m.memory;
    const pages = full ? allPages(mem.pages) : mem.dirtyPages();
    mem.clearDirty();
    const seq = (this.flying > 0 ? this.taken : this.seq) + 1;
    this.taken = seq;
    const delta = this.options.delta !== false && !full;
    // Each page's delta base is fixed now: history entries are replaced, never changed, so a later capture cannot move it.
    const bases = delta ? Array.from(pages, (p) => this.history.get(p)) : null;
    // The history keeps at most `capacity` pages: only the last ones sent need remembering.
    // Pipelined, they are copied now (the guest runs on); stop-and-wait, at the acknowledgement.
    const sent: [number, Uint8Array][] = [];
    if (this.history.capacity > 0) {
      for (let i = Math.max(0, pages.length - this.history.capacity); i < pages.length; i++) {
        const p = pages[i];
        sent.push([p, copy ? mem.page(p).slice() : mem.page(p)]);
      }
    }
    const tail: Entry[] = [];
    if (opts.sectors) {
      // A full checkpoint starts from an empty disk, so zero sectors need not travel; in an
      // incremental one (Remus's epoch writes) a sector written with zeros must.
      for (const [index, data] of opts.sectors) if (!full || !isZero(data)) tail.push({ space: Space.SECTOR, index, enc: Enc.RAW, data });
    }
    for (const o of opts.outputs ?? []) tail.push({ space: Space.OUTPUT, index: o.index, enc: o.device === "console" ? 0 : 1, data: o.data });
    const head = { seq, generation: this.generation, full, memoryPages: mem.pages, diskSectors: opts.diskSectors };
    // A pipelined checkpoint's pages are the delta bases of the next one, taken before this one is
    // acknowledged (the secondary applies them in order). If it fails, the next is full (see transmit).
    const atAck = !copy || mutations.deltaBaseAtAck;
    const c = new Captured(this, mem, head, pages, bases, tail, captureMachine(m), opts.minFrames ?? 1, atAck ? sent : [], copy);
    opts.captured?.(seq);
    if (!atAck) this.remember(full, sent, true);
    return c;
  }

  /**
   * Carry a checkpoint to the secondary; resolves once it holds all of it.
   * Checkpoints are sent in the order they were taken, each one's frames
   * before any of the next; several may be on their way at once (once a
   * checkpoint's commit frame is sent, the next one's frames may follow while
   * its own still await their acknowledgements), as Remus's epochs are.
   */
  async send(c: Captured, opts: Pick<SyncOptions, "at">): Promise<SyncStats> {
    const { seq } = c;
    const expected = (this.flying > 0 ? this.lastSent : this.seq) + 1;
    if (seq !== expected || (!c.pipelined && this.flying > 0)) {
      // Its pages are already off the dirty set (and, pipelined, the next one's delta bases): give them back, and start again from a full one.
      c.release();
      c.memory.markDirty(c.pages);
      this.needsFull = true;
      throw new InvariantError(`checkpoint ${seq} sent out of turn (expected ${expected}, ${this.flying} in flight)`);
    }
    this.lastSent = seq;
    const before = this.issued;
    let out!: () => void;
    this.issued = new Promise<void>((resolve) => (out = resolve));
    const sending = (async () => {
      await before;
      return this.transmit(c, opts, out);
    })();
    const settled = sending.then(() => undefined, () => undefined);
    this.sends.add(settled);
    try {
      return await sending;
    } finally {
      out();
      this.sends.delete(settled);
    }
  }

  /** Resolves once nothing is in flight (each send acknowledged or failed): a stop-and-wait checkpoint waits for this. */
  async idle(): Promise<void> {
    while (this.sends.size > 0) await Promise.all([...this.sends]);
  }

  private async transmit(c: Captured, opts: Pick<SyncOptions, "at">, out: () => void): Promise<SyncStats> {
    const { seq, full, pages, sent } = c;
    const limit = this.options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    const window = Math.max(limit, this.options.windowBytes ?? limit);
    /** Frames sent and not yet acknowledged, oldest first. */
    const flying: { reply: Promise<SyncReply>; bytes: number }[] = [];
    let flyingBytes = 0;
    let sentBytes = 0;
    let commitSent = false;
    try {
      await opts.at?.("before-transfer");
      while (!c.done) {
        if (c.frames > 0) {
          if (c.frames === 1) await opts.at?.("mid-transfer");
          await this.link.pace?.();
        }
        const bytes = c.nextFrame(limit);
        sentBytes += bytes.length;
        commitSent = c.done;
        const reply = this.link.send(bytes);
        // Awaited in its turn below; one behind it failing first must not go unhandled meanwhile.
        reply.catch(() => undefined);
        flying.push({ reply, bytes: bytes.length });
        flyingBytes += bytes.length;
        // The final frame is out: the next checkpoint's frames may follow it.
        if (commitSent) out();
        // The next frame is encoded once the window has room for it; the last waits for every reply.
        // The first goes alone: it starts the checkpoint over at the secondary, and a later frame that
        // overtook it (a link may reorder) would join whatever a failed attempt under the same seq left
        // staged there — a copy no primary captured.
        const alone = c.frames === 1 && !mutations.windowFromFirstFrame;
        while (flying.length > 0 && (c.done || alone || flyingBytes + limit > window)) {
          const oldest = flying.shift()!;
          flyingBytes -= oldest.bytes;
          const r = await oldest.reply;
          if (!r.ok) throw new SyncRefused(r.code, r.reason);
        }
      }
    } catch (e) {
      // Nothing of a failed checkpoint may still be on its way when the next one starts: a frame of it
      // arriving after the next one's first, under the same seq (a re-send takes it), would be applied as
      // part of that one.
      await Promise.allSettled(flying.map((f) => f.reply));
      c.release();
      c.memory.markDirty(pages);
      // The commit frame went out and no answer came back: the secondary may or
      // may not hold this checkpoint. A retry under the same seq would be taken
      // for a re-send and dropped, and deltas would have no certain base, so
      // start again with a full checkpoint (as after "out-of-order").
      const uncertain = commitSent && !(e instanceof SyncRefused);
      if (uncertain) this.needsFull = true;
      else if (c.pipelined) {
        // Its pages are already the delta bases of what follows. If nothing was taken after it,
        // forget every base (the next one sends whole pages, under the same seq); otherwise
        // those behind it are encoded against it: start again with a full checkpoint.
        if (this.taken === seq) {
          if (!mutations.keepBasesOfFailed) this.history.clear();
        }
        else this.needsFull = true;
      }
      throw e;
    }
    // Several in flight may be acknowledged out of turn: the seq only grows.
    this.seq = Math.max(this.seq, seq);
    if (!c.pipelined) this.needsFull = false;
    this.remember(full, sent, false);
    // (A pipelined one leaves needsFull alone: it was taken only when none was due, and a failure
    // of another in flight since then has asked for a full checkpoint, which stands.)
    return this.stats(c, sentBytes, opts);
  }

  /** The secondary will hold these pages: the bases of the next checkpoint's deltas (`owned`: copies to adopt, else views of memory to copy). */
  private remember(full: boolean, sent: [number, Uint8Array][], owned: boolean): void {
    if (full) this.history.clear();
    for (const [p, page] of sent) this.history.set(p, owned ? page : page.slice());
  }

  private async stats(c: Captured, sentBytes: number, opts: Pick<SyncOptions, "at">): Promise<SyncStats> {
    const { seq, full, pages, frames, deltaSaved } = c;
    const stats: SyncStats = {
      seq,
      full,
      pages: pages.length,
      dirtyBytes: pages.length * PAGE_SIZE,
      sentBytes,
      deltaSaved,
      frames,
      sentPages: Array.from(pages.subarray(0, MAX_LISTED_PAGES)),
      instructions: c.instructions,
    };
    this.totals.syncs++;
    this.totals.pages += stats.pages;
    this.totals.dirtyBytes += stats.dirtyBytes;
    this.totals.sentBytes += sentBytes;
    this.totals.deltaSaved += deltaSaved;
    await opts.at?.("after-ack");
    return stats;
  }
}

const EMPTY = new Uint8Array(0);

/** A glance at 32 words spread over the page: if nearly all changed, the page was rewritten and a delta cannot win. */
function worthADelta(prev: Uint8Array, next: Uint8Array): boolean {
  if ((prev.byteOffset & 3) !== 0 || (next.byteOffset & 3) !== 0) return true;
  const a = new Int32Array(prev.buffer, prev.byteOffset, prev.byteLength >> 2);
  const b = new Int32Array(next.buffer, next.byteOffset, next.byteLength >> 2);
  const step = Math.max(1, a.length >> 5);
  let same = 0;
  for (let i = 0; i < a.length; i += step) if (a[i] === b[i]) same++;
  return same >= 4;
}

function allPages(n: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}

