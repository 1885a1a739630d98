/**
 * The secondary's copy of a guest: its memory and machine state as of the
 * last committed checkpoint, kept in RAM for a fast takeover and in durable
 * storage so that it survives the secondary's own restart.
 *
 * Frames of a checkpoint are staged until its COMMIT frame arrives; then the
 * whole checkpoint is decoded and checked, written in one storage transaction,
 * and only then copied into RAM. A torn transfer (a missing, repeated or
 * corrupt frame) is refused and the staging dropped: the copy stays at the
 * previous checkpoint.
 */
import type { Output } from "../devices/backend.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import { CheckpointError, Enc, Space, decodeFrame, type Entry, type Frame, type MachineState } from "./checkpoint.ts";
import { applyDelta } from "./delta.ts";
import type { SyncReply } from "./replicator.ts";

export interface ReplicaMeta {
  seq: number;
  generation: number;
  memoryPages: number;
  diskSectors: number;
  machine: MachineState;
}

export interface CommitBatch {
  full: boolean;
  /** Outputs the checkpoint holds back (Remus); they replace the previous checkpoint's. */
  outputs: Output[];
  /** New page contents; null = all zero. */
  pages: [number, Uint8Array | null][];
  sectors: [number, Uint8Array][];
  meta: ReplicaMeta;
  /**
   * The checkpoint's frames were staged (`stage`): the commit only switches
   * over. Otherwise whatever is staged is a torn checkpoint's and must not
   * become part of this one (it may hold pages this one, full, leaves out as zero).
   */
  staged?: boolean;
}

/** Durable storage of a replica; `commit` must be all or nothing. */
export interface ReplicaStore {
  /**
   * Optional: store one frame's pages and sectors as it arrives, in a small
   * write of its own, invisible until `commit` (which then only switches the
   * copy over): so applying a large checkpoint never blocks the secondary for
   * long. `first`: the checkpoint's first frame (anything staged before is torn).
   * A checkpoint of several frames is staged frame by frame, and its `commit`
   * gets empty `pages` and `sectors`; one of a single frame goes whole to `commit`.
   */
  stage?(first: boolean, pages: [number, Uint8Array | null][], sectors: [number, Uint8Array][]): void;
  commit(batch: CommitBatch): void;
  /**
   * The copy. `pages` in the order to apply them — a later entry for a page
   * replaces an earlier one; null: all zero — and read as it is iterated, so
   * a 64 MiB copy goes straight into the guest's RAM and is never held twice.
   */
  load(): { meta: ReplicaMeta; pages: Iterable<[number, Uint8Array | null]>; outputs: Output[] } | null;
}

export class Replica {
  meta: ReplicaMeta | null = null;
  /**
   * The copy's memory in RAM. While a full checkpoint is staged into a fresh
   * image, the old one is let go (two images of a 64 MiB guest would not fit
   * the platform's 128 MB); should it be needed before that checkpoint
   * commits (a takeover, or the checkpoint was torn), it is read back from
   * the store, which still holds it whole.
   */
  private ram: Uint8Array | null = null;
  /** Outputs of the last checkpoint, held back by the primary until it heard our ack. */
  outputs: Output[] = [];
  private staged: Frame[] = [];
  /**
   * A full checkpoint's pages, copied into a fresh memory image as its frames
   * arrive (and taken out of the staged frames), so staging a full checkpoint
   * holds one image of the guest plus one frame — not every frame of it.
   * It becomes `memory` only when the checkpoint commits.
   */
  private fullImage: { memory: Uint8Array; pages: number[] } | null = null;
  /** Pages of an incremental checkpoint staged so far (a later delta in the same checkpoint builds on them). */
  private stagedPages = new Map<number, Uint8Array | null>();
  readonly stats = { committed: 0, refused: 0, bytes: 0 };

  constructor(
    private readonly store: ReplicaStore,
    /** The generation whose primary this replica serves; frames from any other are refused. */
    readonly generation: number,
  ) {
    this.reload();
  }

  get memory(): Uint8Array | null {
    if (!this.ram && this.meta) this.reload();
    return this.ram;
  }

  /** The copy as the store holds it. */
  private reload(): void {
    const saved = this.store.load();
    if (!saved || saved.meta.generation !== this.generation) return;
    this.meta = saved.meta;
    this.ram = new Uint8Array(saved.meta.memoryPages * PAGE_SIZE);
    for (const [p, data] of saved.pages) {
      if (data) this.ram.set(data, p * PAGE_SIZE);
      else this.ram.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    }
    this.outputs = saved.outputs;
  }

  get seq(): number {
    return this.meta?.seq ?? 0;
  }

  /** One frame. `acceptOlder` is the mutation acceptOlderGeneration (src/protocol/mutations.ts): never in a real run. */
  receive(bytes: Uint8Array, acceptOlder = false): SyncReply {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      return this.refuse("corrupt", e.reason);
    }
    if (frame.generation < this.generation && !acceptOlder) return this.refuse("superseded", `frame of generation ${frame.generation}; this replica serves generation ${this.generation}`);
    if (frame.generation > this.generation) return this.refuse("out-of-order", `frame of generation ${frame.generation}; expected ${this.generation}`);
    // A full checkpoint older than the copy is a stale one (sequence numbers only grow, full ones included).
    if (frame.full && this.meta && frame.seq < this.seq) return this.refuse("out-of-order", `full checkpoint ${frame.seq} is older than the copy's ${this.seq}`);
    if (!frame.full) {
      if (!this.meta) return this.refuse("out-of-order", "an incremental checkpoint needs a full one first");
      if (frame.seq === this.seq && frame.machine) {
        // The primary did not hear our ack and sent the same checkpoint again.
        this.staged = [];
        return { ok: true, seq: this.seq, committed: true };
      }
      if (frame.seq !== this.seq + 1) return this.refuse("out-of-order", `checkpoint ${frame.seq} after ${this.seq}`);
    }
    // A new first part starts the checkpoint over: whatever was staged was torn.
    if (frame.part === 0) this.staged = [];
    const first = this.staged[0];
    if (frame.part !== this.staged.length || (first && (first.seq !== frame.seq || first.full !== frame.full))) {
      return this.refuse("out-of-order", `part ${frame.part} of checkpoint ${frame.seq} does not follow what was staged`);
    }
    this.staged.push(frame);
    // A checkpoint of one frame (the usual incremental one) is written whole by its commit, in one transaction.
    const single = frame.part === 0 && frame.machine !== null;
    if (this.store.stage && !single) {
      try {
        if (frame.part === 0) this.stagedPages.clear();
        const { pages, sectors } = this.resolve(frame, this.stagedPages, frame.full ? null : this.memory);
        if (!frame.full) for (const [p, d] of pages) this.stagedPages.set(p, d);
        this.store.stage(frame.part === 0, pages, sectors);
      } catch (e) {
        if (!(e instanceof CheckpointError)) throw e;
        return this.refuse("corrupt", e.reason);
      }
    }
    if (frame.full) this.stageFullPages(frame);
    if (!frame.machine) return { ok: true, seq: frame.seq, committed: false };
    const frames = this.staged;
    const image = this.fullImage;
    // An incremental checkpoint staged frame by frame has its pages resolved already: the commit need not do it again.
    const resolved = this.store.stage && !single && !frame.full ? this.stagedPages : null;
    this.staged = [];
    this.fullImage = null;
    this.stagedPages = new Map();
    try {
      this.commit(frames, frame.machine, image, resolved);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      return this.refuse("corrupt", e.reason);
    }
    this.stats.bytes += bytes.length;
    return { ok: true, seq: frame.seq, committed: true };
  }

  /**
   * One frame's entries as the copy keeps them: pages whole (a delta applied
   * to the page's version earlier in this checkpoint, else to the copy it
   * patches; null = all zero), sectors, outputs. The one place entries are
   * read, for the store's staging and for the commit alike.
   */
  private resolve(frame: Frame, earlier: ReadonlyMap<number, Uint8Array | null>, base: Uint8Array | null) {
    const pages: [number, Uint8Array | null][] = [];
    const sectors: [number, Uint8Array][] = [];
    const outputs: Output[] = [];
    for (const e of frame.entries) {
      if (e.space === Space.OUTPUT) outputs.push(outputOf(e));
      else if (e.space === Space.SECTOR) sectors.push([e.index, e.data]);
      else if (e.enc === Enc.ZERO) pages.push([e.index, null]);
      else if (e.enc === Enc.RAW) pages.push([e.index, e.data]); // the frame is ours alone: no copy
      else {
        const prev = earlier.has(e.index) ? earlier.get(e.index) : base?.subarray(e.index * PAGE_SIZE, (e.index + 1) * PAGE_SIZE);
        if (prev === undefined) throw new CheckpointError(`delta for page ${e.index} with no base version`);
        const page = prev ? prev.slice() : new Uint8Array(PAGE_SIZE);
        try {
          applyDelta(page, e.data);
        } catch (err) {
          throw new CheckpointError(`page ${e.index}: ${(err as Error).message}`);
        }
        pages.push([e.index, page]);
      }
    }
    return { pages, sectors, outputs };
  }

  /** Copy a full checkpoint's whole pages into the image being staged; anything else stays in the frame for the commit to check. */
  private stageFullPages(frame: Frame): void {
    if (frame.part === 0 || !this.fullImage) {
      this.ram = null; // let the old image go (see `memory`)
      this.fullImage = { memory: new Uint8Array(frame.memoryPages * PAGE_SIZE), pages: [] };
    }
    const image = this.fullImage;
    const rest: Entry[] = [];
    for (const e of frame.entries) {
      const fits = e.space === Space.PAGE && e.enc === Enc.RAW && e.data.length === PAGE_SIZE && (e.index + 1) * PAGE_SIZE <= image.memory.length;
      if (!fits) {
        rest.push(e);
        continue;
      }
      image.memory.set(e.data, e.index * PAGE_SIZE);
      image.pages.push(e.index);
    }
    frame.entries = rest;
  }

  private refuse(code: Extract<SyncReply, { ok: false }>["code"], reason: string): SyncReply {
    this.staged = [];
    this.fullImage = null;
    this.stagedPages.clear();
    this.stats.refused++;
    return { ok: false, code, reason };
  }

  /** Build every new page first (deltas may fail), then store, then copy into RAM. */
  private commit(frames: Frame[], machine: MachineState, image: Replica["fullImage"], resolved: Map<number, Uint8Array | null> | null): void {
    const head = frames[0];
    if (frames.some((f) => f.memoryPages !== head.memoryPages || f.diskSectors !== head.diskSectors)) {
      throw new CheckpointError("frames disagree on the guest's size");
    }
    if (this.meta && !head.full && head.memoryPages !== this.meta.memoryPages) throw new CheckpointError("memory size changed");
    const base = head.full || !this.memory ? null : this.memory;
    const pages = new Map<number, Uint8Array | null>();
    if (image && image.memory.length !== head.memoryPages * PAGE_SIZE) throw new CheckpointError("frames disagree on the guest's size");
    for (const p of image?.pages ?? []) pages.set(p, image!.memory.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
    const sectors: [number, Uint8Array][] = [];
    const outputs: Output[] = [];
    for (const f of frames) {
      if (resolved) {
        for (const e of f.entries) if (e.space === Space.OUTPUT) outputs.push(outputOf(e));
        continue;
      }
      const r = this.resolve(f, pages, base);
      for (const [p, data] of r.pages) pages.set(p, data);
      for (const [i, data] of r.sectors) sectors.push([i, data.slice()]);
      for (const o of r.outputs) outputs.push(o); // not spread: a frame may carry more outputs than a call has arguments
    }
    const meta: ReplicaMeta = { seq: head.seq, generation: this.generation, memoryPages: head.memoryPages, diskSectors: head.diskSectors, machine };
    // A store that staged each frame as it came only switches the copy over now.
    if (resolved) for (const [p, data] of resolved) pages.set(p, data);
    const staged = !!this.store.stage && frames.length > 1;
    this.store.commit({ full: head.full, pages: staged ? [] : [...pages], sectors: staged ? [] : sectors, outputs, meta, staged });
    // A full checkpoint's image is the new memory (its pages are in place already).
    const memory = head.full ? (image?.memory ?? new Uint8Array(head.memoryPages * PAGE_SIZE)) : (this.memory ?? new Uint8Array(head.memoryPages * PAGE_SIZE));
    this.ram = memory;
    for (const [p, data] of pages) {
      if (data && image && data.buffer === image.memory.buffer) continue;
      if (data) memory.set(data, p * PAGE_SIZE);
      else memory.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    }
    this.meta = meta;
    this.outputs = outputs;
    this.stats.committed++;
  }
}

/** An output entry as the copy holds it (its own bytes, not the frame's). */
function outputOf(e: Entry): Output {
  return { device: e.enc === 0 ? "console" : "net", index: e.index, data: e.data.slice() };
}

/** A store in RAM only, for tests and benchmarks of the plain logic. */
export class MemoryReplicaStore implements ReplicaStore {
  meta: ReplicaMeta | null = null;
  pages = new Map<number, Uint8Array>();
  sectors = new Map<number, Uint8Array>();
  outputs: Output[] = [];
  /** Fail the next commit, as a storage error would, to show it leaves nothing behind. */
  failNext = false;

  commit(b: CommitBatch): void {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("storage failure");
    }
    if (b.full) {
      this.pages.clear();
      this.sectors.clear();
    }
    for (const [p, d] of b.pages) {
      if (d) this.pages.set(p, d.slice());
      else this.pages.delete(p);
    }
    for (const [s, d] of b.sectors) this.sectors.set(s, d.slice());
    this.outputs = b.outputs.map((o) => ({ ...o, data: o.data.slice() }));
    this.meta = structuredClone(b.meta);
  }

  load() {
    return this.meta ? { meta: structuredClone(this.meta), pages: this.pages.entries(), outputs: this.outputs.map((o) => ({ ...o })) } : null;
  }
}
