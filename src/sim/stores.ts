/**
 * Durable storage for the simulator's parties: kept across a party's
 * restarts (RAM lost, storage kept), and guarded so that a dead incarnation
 * can write nothing more (its code never runs again after a crash, but a
 * promise it already held could still resolve).
 */
import { SECTOR_SIZE } from "../guest/abi.ts";
import type { Output } from "../devices/backend.ts";
import type { CommitBatch, ReplicaMeta } from "../kemari/replica.ts";
import type { DiskStore, HostMeta, HostStore, IdleMeta } from "../protocol/ports.ts";
import type { HostPlace } from "../host/status.ts";
import type { SwitchMeta, WitnessStore } from "../protocol/witness.ts";

export class Guard {
  constructor(
    readonly alive: () => boolean,
    readonly name = "",
  ) {}
  check(): void {
    if (!this.alive()) throw new Error(`a dead incarnation touched storage${this.name ? ` (${this.name})` : ""}`);
  }
}

export class MemDisk implements DiskStore {
  constructor(
    readonly sectors: number,
    readonly data = new Map<number, Uint8Array>(),
    private readonly guard: Guard | null = null,
  ) {}

  read(sector: number, count: number): Uint8Array {
    const out = new Uint8Array(count * SECTOR_SIZE);
    for (let i = 0; i < count; i++) {
      const d = this.data.get(sector + i);
      if (d) out.set(d, i * SECTOR_SIZE);
    }
    return out;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    this.guard?.check();
    for (let i = 0; i < data.length / SECTOR_SIZE; i++) this.data.set(sector + i, data.slice(i * SECTOR_SIZE, (i + 1) * SECTOR_SIZE));
  }

  entries(): Iterable<[number, Uint8Array]> {
    return [...this.data].sort((a, b) => a[0] - b[0]);
  }
}

/** What a host keeps across restarts. */
export class HostDurable {
  meta: HostMeta | null = null;
  disk = new Map<number, Uint8Array>();
  copy: { meta: ReplicaMeta; pages: Map<number, Uint8Array>; sectors: Map<number, Uint8Array>; outputs: Output[] } | null = null;
  /** Frames staged for the checkpoint in progress (as the SQL store stages them: durable, invisible until commit). */
  staging: { pages: [number, Uint8Array | null][]; sectors: [number, Uint8Array][] } = { pages: [], sectors: [] };
  /** A primary's save of its idle guest: pages, and the meta while the save is valid. */
  idlePages = new Map<number, Uint8Array>();
  idleMeta: IdleMeta | null = null;
  /** The simulator's checker hears each commit. */
  onCommit: ((copy: NonNullable<HostDurable["copy"]>) => void) | null = null;

  /** This incarnation's view, writable only while it lives. */
  view(guard: Guard): HostStore {
    return {
      loadMeta: () => (this.meta ? structuredClone(this.meta) : null),
      saveMeta: (m) => {
        guard.check();
        this.meta = structuredClone(m);
      },
      // The durable map itself: writes land in storage at once, as SQLite's do.
      disk: (sectors) => new MemDisk(sectors, this.disk, guard),
      replica: {
        stage: (first, pages, sectors) => {
          guard.check();
          if (first) this.staging = { pages: [], sectors: [] };
          for (const [p, d] of pages) this.staging.pages.push([p, d ? d.slice() : null]);
          for (const [x, d] of sectors) this.staging.sectors.push([x, d.slice()]);
        },
        commit: (given: CommitBatch) => {
          guard.check();
          // What was staged frame by frame (if this checkpoint was: else it is a torn one's), then whatever the commit itself carries.
          const staged = given.staged ? this.staging : { pages: [], sectors: [] };
          const b = { ...given, pages: [...staged.pages, ...given.pages], sectors: [...staged.sectors, ...given.sectors] };
          this.staging = { pages: [], sectors: [] };
          const prev = this.copy;
          const pages = b.full || !prev ? new Map<number, Uint8Array>() : new Map(prev.pages);
          const sectors = b.full || !prev ? new Map<number, Uint8Array>() : new Map(prev.sectors);
          for (const [p, data] of b.pages) {
            if (data) pages.set(p, data.slice());
            else pages.delete(p);
          }
          for (const [s, data] of b.sectors) sectors.set(s, data.slice());
          this.copy = { meta: structuredClone(b.meta), pages, sectors, outputs: b.outputs.map((o) => ({ ...o, data: o.data.slice() })) };
          this.onCommit?.(this.copy);
        },
        load: () => (this.copy ? { meta: structuredClone(this.copy.meta), pages: [...this.copy.pages].map(([p, x]) => [p, x.slice()] as [number, Uint8Array]), outputs: this.copy.outputs.map((o) => ({ ...o, data: o.data.slice() })) } : null),
        clear: () => {
          guard.check();
          this.copy = null;
        },
        adoptDisk: () => {
          guard.check();
          this.disk.clear();
          for (const [s, x] of this.copy?.sectors ?? []) this.disk.set(s, x.slice());
        },
      },
      idle: {
        save: (full, pages, meta) => {
          guard.check();
          if (full) this.idlePages.clear();
          for (const [p, d] of pages) {
            if (d) this.idlePages.set(p, d.slice());
            else this.idlePages.delete(p);
          }
          this.idleMeta = structuredClone(meta);
        },
        load: () => (this.idleMeta ? { meta: structuredClone(this.idleMeta), pages: [...this.idlePages].map(([p, x]) => [p, x.slice()] as [number, Uint8Array]) } : null),
        invalidate: () => {
          guard.check();
          this.idleMeta = null;
        },
      },
      clearAll: () => this.clearAll(guard),
      // In memory, forgetting for good and freeing the space are one step.
      discard: () => this.clearAll(guard),
    };
  }

  private clearAll(guard: Guard): void {
    guard.check();
    this.idlePages.clear();
    this.idleMeta = null;
    this.meta = null;
    this.disk.clear();
    this.copy = null;
  }
}

/** What the witness keeps across restarts. */
export class WitnessDurable {
  meta: SwitchMeta | null = null;
  console = new Map<number, Uint8Array>();
  packets = new Map<number, Uint8Array>();
  cut: HostPlace[] = [];
  alarm: number | null = null;

  view(guard: Guard): WitnessStore {
    return {
      loadMeta: () => (this.meta ? structuredClone(this.meta) : null),
      saveMeta: (m) => {
        guard.check();
        this.meta = structuredClone(m);
      },
      recordOutputs: (outputs) => {
        guard.check();
        const fresh: Output[] = [];
        for (const o of outputs) {
          const map = o.device === "console" ? this.console : this.packets;
          if (map.has(o.index)) continue;
          map.set(o.index, o.data.slice());
          fresh.push(o);
        }
        return fresh;
      },
      partitioned: () => [...this.cut],
      setPartitioned: (h) => {
        guard.check();
        this.cut = h ? [...this.cut, h] : [];
      },
      clearAll: () => {
        guard.check();
        this.meta = null;
        this.console.clear();
        this.packets.clear();
        this.alarm = null;
      },
    };
  }
}
