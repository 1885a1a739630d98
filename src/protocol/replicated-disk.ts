/**
 * The primary's disk in a protected mode. A disk write is replicated *state*,
 * like memory: it reaches the local disk at once (the guest reads its own
 * writes) and travels to the secondary with the next checkpoint, never ahead
 * of it — so the secondary's disk always corresponds to its memory
 * checkpoint, and a takeover that re-runs a batch of block requests finds
 * the disk as it was before the batch.
 *
 * Until that checkpoint is acknowledged a write could still be taken back by
 * a failover, so the disk has two views: `read` (live: what the guest sees)
 * and `readAcked` (what a takeover would resume with: the live disk with the
 * acknowledged contents of every sector written since).
 */
import { SECTOR_SIZE } from "../guest/abi.ts";
import type { DiskStore } from "./ports.ts";
import { mutations } from "./mutations.ts";

export class ReplicatedDisk implements DiskStore {
  /** Sector → its acknowledged contents, for every sector written since the last acknowledged checkpoint. */
  private readonly undo = new Map<number, Uint8Array>();
  /** Sector → the number of the last write to it (so a pipelined checkpoint knows what was written after it was taken). */
  private readonly lastWrite = new Map<number, number>();
  private writes = 0;
  /** Only under the mutation `mirrorDiskAhead`: send each write to the secondary before it completes. */
  mirror: ((sector: number, data: Uint8Array) => Promise<void>) | null = null;

  constructor(private readonly local: DiskStore) {}

  get sectors(): number {
    return this.local.sectors;
  }

  read(sector: number, count: number): Uint8Array {
    return this.local.read(sector, count);
  }

  /** What the secondary holds (or will, once the checkpoint in flight is acknowledged). */
  readAcked(sector: number, count: number): Uint8Array {
    const out = this.local.read(sector, count);
    if (mutations.diskReadsLive) return out;
    for (let i = 0; i < count; i++) {
      const old = this.undo.get(sector + i);
      if (old) out.set(old, i * SECTOR_SIZE);
    }
    return out;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    if (this.mirror && mutations.mirrorDiskAhead) await this.mirror(sector, data);
    const count = data.length / SECTOR_SIZE;
    const n = ++this.writes;
    for (let i = 0; i < count; i++) {
      if (!this.undo.has(sector + i)) this.undo.set(sector + i, this.local.read(sector + i, 1));
      this.lastWrite.set(sector + i, n);
    }
    await this.local.write(sector, data);
  }

  entries(): Iterable<[number, Uint8Array]> {
    return this.local.entries();
  }

  /** Sectors written since the last acknowledged checkpoint, with their current contents, ascending. */
  pending(): [number, Uint8Array][] {
    return [...this.undo.keys()].sort((a, b) => a - b).map((s) => [s, this.local.read(s, 1)]);
  }

  get pendingCount(): number {
    return this.undo.size;
  }

  /** A checkpoint carrying every pending write was acknowledged. */
  acknowledged(): void {
    this.undo.clear();
    this.lastWrite.clear();
    this.ackedUpTo = this.writes;
  }

  /** The last write a checkpoint known to be acknowledged includes: an older one's late ack changes nothing. */
  private ackedUpTo = 0;

  /** The pending writes, taken for a checkpoint that travels while the guest runs on (and may write again). */
  capture(): DiskCapture {
    return { sectors: this.pending(), upTo: this.writes };
  }

  /**
   * That checkpoint was acknowledged: what it carried is what a takeover
   * would now resume with. A sector written again since stays pending, its
   * acknowledged contents now the ones the checkpoint carried.
   */
  acknowledgedCapture(c: DiskCapture): void {
    // Checkpoints in flight may be acknowledged out of turn (Remus): a newer one carried
    // every sector an older one did, as it then stood, so the older one's ack is news to no one.
    if (c.upTo < this.ackedUpTo) return;
    this.ackedUpTo = c.upTo;
    for (const [s, data] of c.sectors) {
      if ((this.lastWrite.get(s) ?? 0) <= c.upTo) {
        this.undo.delete(s);
        this.lastWrite.delete(s);
      } else this.undo.set(s, data);
    }
  }
}

export interface DiskCapture {
  sectors: [number, Uint8Array][];
  /** The number of the last write it includes. */
  upTo: number;
}
