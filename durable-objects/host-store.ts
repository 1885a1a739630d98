/** A host's durable storage (src/protocol/ports.ts HostStore) in the Durable Object's SQLite. */
import type { DiskStore, HostMeta, HostStore } from "../src/protocol/ports.ts";
import { SqlDisk } from "./sql-disk.ts";
import { REPLICA_BULK_TABLES, SqlReplicaStore } from "./replica-store.ts";
import { IDLE_BULK_TABLES, SqlIdleStore } from "./idle-store.ts";

/** What takes space (each store names its own): freed a batch at a time after a discard. */
const BULK_TABLES = [...REPLICA_BULK_TABLES, ...IDLE_BULK_TABLES, "disk"] as const;

export class SqlHostStore implements HostStore {
  readonly replica: SqlReplicaStore;
  readonly idle: SqlIdleStore;
  private liveDisk: SqlDisk | null = null;

  constructor(private readonly storage: DurableObjectStorage) {
    storage.sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    this.replica = new SqlReplicaStore(storage);
    this.idle = new SqlIdleStore(storage);
  }

  loadMeta(): HostMeta | null {
    const row = this.storage.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'host'").toArray()[0];
    return row ? (JSON.parse(row.v) as HostMeta) : null;
  }

  saveMeta(meta: HostMeta): void {
    this.storage.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('host', ?)", JSON.stringify(meta));
  }

  disk(sectors: number): DiskStore {
    this.liveDisk ??= new SqlDisk(this.storage, sectors);
    return this.liveDisk;
  }

  /**
   * Forget the guest for good, at once: the rows that say a guest is here
   * (a few, small). Its pages and sectors stay until `wipeSome` frees them: deleting
   * a 64 MiB copy held the object — and locally every object — for 200–700 ms.
   */
  discard(): void {
    this.storage.transactionSync(() => {
      this.storage.sql.exec("DELETE FROM meta");
      this.replica.forget();
      this.idle.invalidate();
    });
    this.liveDisk = null;
  }

  /** Rows left by a discarded guest (its pages and sectors), before `wipeSome` has freed them all. */
  get discardedLeft(): boolean {
    if (this.loadMeta()) return false;
    return BULK_TABLES.some((t) => this.storage.sql.exec(`SELECT 1 FROM ${t} LIMIT 1`).toArray().length > 0);
  }

  /** Delete up to `rows` rows of a discarded guest's pages and sectors; true once none are left. */
  wipeSome(rows: number): boolean {
    if (this.loadMeta()) throw new Error("wipeSome: this host holds a guest; discard it first");
    let left = rows;
    for (const t of BULK_TABLES) {
      if (left <= 0) return false;
      left -= this.storage.sql.exec(`DELETE FROM ${t} WHERE rowid IN (SELECT rowid FROM ${t} LIMIT ?)`, left).rowsWritten;
    }
    return left > 0;
  }

  clearAll(): void {
    this.storage.transactionSync(() => {
      this.storage.sql.exec("DELETE FROM meta");
      this.storage.sql.exec("DELETE FROM disk");
    });
    this.replica.clear();
    this.idle.clear();
    this.liveDisk = null;
  }
}
