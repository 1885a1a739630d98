/** A primary's save of its idle guest (src/protocol/ports.ts IdleStore) in the Durable Object's SQLite. */
import type { IdleMeta, IdleStore } from "../src/protocol/ports.ts";

/** The table that takes the space: what a discarded host's wipe frees (host-store.ts). */
export const IDLE_BULK_TABLES = ["idle_pages"] as const;

export class SqlIdleStore implements IdleStore {
  constructor(private readonly storage: DurableObjectStorage) {
    storage.sql.exec("CREATE TABLE IF NOT EXISTS idle_pages (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    storage.sql.exec("CREATE TABLE IF NOT EXISTS idle_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
  }

  save(full: boolean, pages: [number, Uint8Array | null][], meta: IdleMeta): void {
    const sql = this.storage.sql;
    this.storage.transactionSync(() => {
      if (full) sql.exec("DELETE FROM idle_pages");
      for (const [p, data] of pages) {
        if (data) sql.exec("INSERT OR REPLACE INTO idle_pages (idx, data) VALUES (?, ?)", p, data);
        else sql.exec("DELETE FROM idle_pages WHERE idx = ?", p);
      }
      sql.exec("INSERT OR REPLACE INTO idle_meta (k, v) VALUES ('idle', ?)", JSON.stringify(meta));
    });
  }

  load(): { meta: IdleMeta; pages: Iterable<[number, Uint8Array]> } | null {
    const row = this.storage.sql.exec<{ v: string }>("SELECT v FROM idle_meta WHERE k = 'idle'").toArray()[0];
    if (!row) return null;
    const rows = this.storage.sql.exec<{ idx: number; data: ArrayBuffer }>("SELECT idx, data FROM idle_pages");
    const pages = (function* () {
      for (const r of rows) yield [r.idx, new Uint8Array(r.data)] as [number, Uint8Array];
    })();
    return { meta: JSON.parse(row.v) as IdleMeta, pages };
  }

  invalidate(): void {
    this.storage.sql.exec("DELETE FROM idle_meta");
  }

  clear(): void {
    this.storage.transactionSync(() => {
      this.storage.sql.exec("DELETE FROM idle_meta");
      this.storage.sql.exec("DELETE FROM idle_pages");
    });
  }
}
