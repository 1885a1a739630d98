/**
 * A secondary's durable copy of the guest in SQLite: one row per non-zero
 * page, the machine state as JSON, and the disk replica (shared with SqlDisk).
 * A checkpoint is committed in one transaction, so a crash part-way through
 * leaves the previous checkpoint intact.
 */
import type { Output } from "../src/devices/backend.ts";
import type { CommitBatch, ReplicaMeta, ReplicaStore } from "../src/kemari/replica.ts";
import { machineFromJson, machineToJson } from "../src/kemari/state.ts";

export class SqlReplicaStore implements ReplicaStore {
  /** Called half-way through writing a checkpoint's pages: where a mid-apply crash is injected. */
  midway: (() => void) | null = null;

  constructor(private readonly storage: DurableObjectStorage) {
    storage.sql.exec("CREATE TABLE IF NOT EXISTS replica_pages (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    storage.sql.exec("CREATE TABLE IF NOT EXISTS replica_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    storage.sql.exec("CREATE TABLE IF NOT EXISTS disk (sector INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    storage.sql.exec("CREATE TABLE IF NOT EXISTS replica_outputs (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL)");
  }

  commit(b: CommitBatch): void {
    const sql = this.storage.sql;
    this.storage.transactionSync(() => {
      if (b.full) {
        sql.exec("DELETE FROM replica_pages");
        sql.exec("DELETE FROM disk");
      }
      const half = b.pages.length >> 1;
      b.pages.forEach(([p, data], i) => {
        if (i === half) this.midway?.();
        if (data) sql.exec("INSERT OR REPLACE INTO replica_pages (idx, data) VALUES (?, ?)", p, data);
        else sql.exec("DELETE FROM replica_pages WHERE idx = ?", p);
      });
      for (const [s, data] of b.sectors) sql.exec("INSERT OR REPLACE INTO disk (sector, data) VALUES (?, ?)", s, data);
      sql.exec("DELETE FROM replica_outputs");
      b.outputs.forEach((o, i) => sql.exec("INSERT INTO replica_outputs (seq, device, idx, data) VALUES (?, ?, ?, ?)", i, o.device, o.index, o.data));
      const meta = { ...b.meta, machine: machineToJson(b.meta.machine) };
      sql.exec("INSERT OR REPLACE INTO replica_meta (k, v) VALUES ('replica', ?)", JSON.stringify(meta));
    });
  }

  load(): { meta: ReplicaMeta; pages: Iterable<[number, Uint8Array]>; outputs: Output[] } | null {
    const sql = this.storage.sql;
    const row = sql.exec<{ v: string }>("SELECT v FROM replica_meta WHERE k = 'replica'").toArray()[0];
    if (!row) return null;
    const raw = JSON.parse(row.v) as ReplicaMeta;
    const meta: ReplicaMeta = { ...raw, machine: machineFromJson(raw.machine) };
    const rows = sql.exec<{ idx: number; data: ArrayBuffer }>("SELECT idx, data FROM replica_pages");
    const outputs = sql
      .exec<{ device: string; idx: number; data: ArrayBuffer }>("SELECT device, idx, data FROM replica_outputs ORDER BY seq")
      .toArray()
      .map((o) => ({ device: o.device as Output["device"], index: o.idx, data: new Uint8Array(o.data) }));
    return { meta, outputs, pages: (function* () { for (const r of rows) yield [r.idx, new Uint8Array(r.data)] as [number, Uint8Array]; })() };
  }

  /** Forget the replica (after a promotion it is the live guest's, not a copy's). */
  clear(): void {
    this.storage.sql.exec("DELETE FROM replica_pages");
    this.storage.sql.exec("DELETE FROM replica_meta");
    this.storage.sql.exec("DELETE FROM replica_outputs");
  }
}
