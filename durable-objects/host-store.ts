/** A host's durable storage (src/protocol/ports.ts HostStore) in the Durable Object's SQLite. */
import type { DiskStore, HostMeta, HostStore } from "../src/protocol/ports.ts";
import { SqlDisk } from "./sql-disk.ts";
import { SqlReplicaStore } from "./replica-store.ts";
import { SqlIdleStore } from "./idle-store.ts";

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
