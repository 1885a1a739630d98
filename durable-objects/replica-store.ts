/**
 * A secondary's durable copy of the guest in SQLite: one row per non-zero
 * page, one per written disk sector, the held outputs, and the machine state
 * as JSON. A checkpoint is committed in one transaction, so a crash part-way
 * through leaves the previous checkpoint intact.
 *
 * The copy's disk (`replica_disk`) is apart from the live disk (`disk`, which
 * a primary writes): a promoted host keeps its copy, disk included, until a
 * new secondary holds a whole one, while the guest writes the live disk.
 *
 * Format 2 (this one) keeps the copy's sectors in `replica_disk`; format 1
 * (before 2026-12) kept them in `disk`. A copy stored in format 1 is moved
 * over when first loaded, so an upgrade loses no acknowledged checkpoint.
 */
import type { Output } from "../src/devices/backend.ts";
import type { CommitBatch, ReplicaMeta, ReplicaStore } from "../src/kemari/replica.ts";
import { machineFromJson, machineToJson } from "../src/kemari/state.ts";

export const REPLICA_FORMAT = 2;

export class SqlReplicaStore implements ReplicaStore {
  /** Called half-way through writing a checkpoint's pages: where a mid-apply crash is injected. */
  midway: (() => void) | null = null;

  constructor(private readonly storage: DurableObjectStorage) {
    const sql = storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS replica_pages (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS replica_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS replica_disk (sector INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS disk (sector INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS replica_outputs (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL)");
  }

  commit(b: CommitBatch): void {
    const sql = this.storage.sql;
    this.storage.transactionSync(() => {
      if (b.full) {
        sql.exec("DELETE FROM replica_pages");
        sql.exec("DELETE FROM replica_disk");
      }
      const half = b.pages.length >> 1;
      b.pages.forEach(([p, data], i) => {
        if (i === half) this.midway?.();
        if (data) sql.exec("INSERT OR REPLACE INTO replica_pages (idx, data) VALUES (?, ?)", p, data);
        else sql.exec("DELETE FROM replica_pages WHERE idx = ?", p);
      });
      for (const [s, data] of b.sectors) sql.exec("INSERT OR REPLACE INTO replica_disk (sector, data) VALUES (?, ?)", s, data);
      sql.exec("DELETE FROM replica_outputs");
      b.outputs.forEach((o, i) => sql.exec("INSERT INTO replica_outputs (seq, device, idx, data) VALUES (?, ?, ?, ?)", i, o.device, o.index, o.data));
      const meta = { ...b.meta, machine: machineToJson(b.meta.machine), format: REPLICA_FORMAT };
      sql.exec("INSERT OR REPLACE INTO replica_meta (k, v) VALUES ('replica', ?)", JSON.stringify(meta));
    });
  }

  load(): { meta: ReplicaMeta; pages: Iterable<[number, Uint8Array]>; outputs: Output[] } | null {
    const sql = this.storage.sql;
    const row = sql.exec<{ v: string }>("SELECT v FROM replica_meta WHERE k = 'replica'").toArray()[0];
    if (!row) return null;
    const raw = JSON.parse(row.v) as ReplicaMeta & { format?: number };
    if ((raw.format ?? 1) < 2) this.upgradeFromFormat1(raw);
    const meta: ReplicaMeta = { seq: raw.seq, generation: raw.generation, memoryPages: raw.memoryPages, diskSectors: raw.diskSectors, machine: machineFromJson(raw.machine) };
    const rows = sql.exec<{ idx: number; data: ArrayBuffer }>("SELECT idx, data FROM replica_pages");
    const outputs = sql
      .exec<{ device: string; idx: number; data: ArrayBuffer }>("SELECT device, idx, data FROM replica_outputs ORDER BY seq")
      .toArray()
      .map((o) => ({ device: o.device as Output["device"], index: o.idx, data: new Uint8Array(o.data) }));
    return { meta, outputs, pages: (function* () { for (const r of rows) yield [r.idx, new Uint8Array(r.data)] as [number, Uint8Array]; })() };
  }

  /** Format 1 kept the copy's sectors in `disk`: a secondary's `disk` was its copy's. */
  private upgradeFromFormat1(raw: object): void {
    this.storage.transactionSync(() => {
      const sql = this.storage.sql;
      sql.exec("INSERT OR REPLACE INTO replica_disk (sector, data) SELECT sector, data FROM disk");
      sql.exec("INSERT OR REPLACE INTO replica_meta (k, v) VALUES ('replica', ?)", JSON.stringify({ ...raw, format: REPLICA_FORMAT }));
    });
  }

  /** Sectors the copy holds (written ones; the rest read as zeros). */
  sectorsHeld(): number {
    return this.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM replica_disk").one().n;
  }

  /** The copy's disk becomes the live disk (a takeover). */
  adoptDisk(): void {
    this.storage.transactionSync(() => {
      this.storage.sql.exec("DELETE FROM disk");
      this.storage.sql.exec("INSERT INTO disk (sector, data) SELECT sector, data FROM replica_disk");
    });
  }

  /** Forget the copy. */
  clear(): void {
    this.storage.transactionSync(() => {
      for (const t of ["replica_pages", "replica_meta", "replica_outputs", "replica_disk"]) this.storage.sql.exec(`DELETE FROM ${t}`);
    });
  }
}
