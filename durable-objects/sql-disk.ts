/**
 * A host's replica of the virtual disk, one SQLite row per written sector
 * (sectors never written read as zeros, so a fresh disk costs nothing).
 */
import { SECTOR_SIZE } from "../src/guest/abi.ts";
import type { Disk } from "../src/devices/backend.ts";

export class SqlDisk implements Disk {
  constructor(
    private readonly storage: DurableObjectStorage,
    readonly sectors: number,
  ) {
    storage.sql.exec("CREATE TABLE IF NOT EXISTS disk (sector INTEGER PRIMARY KEY, data BLOB NOT NULL)");
  }

  read(sector: number, count: number): Uint8Array {
    const out = new Uint8Array(count * SECTOR_SIZE);
    const rows = this.storage.sql.exec<{ sector: number; data: ArrayBuffer }>(
      "SELECT sector, data FROM disk WHERE sector >= ? AND sector < ?", sector, sector + count);
    for (const row of rows) out.set(new Uint8Array(row.data), (row.sector - sector) * SECTOR_SIZE);
    return out;
  }

  /** Every written sector, for a full checkpoint to a fresh secondary. */
  *entries(): Generator<[number, Uint8Array]> {
    const rows = this.storage.sql.exec<{ sector: number; data: ArrayBuffer }>("SELECT sector, data FROM disk ORDER BY sector");
    for (const row of rows) yield [row.sector, new Uint8Array(row.data)];
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    this.storage.transactionSync(() => {
      for (let i = 0; i < data.length / SECTOR_SIZE; i++) {
        const bytes = data.slice(i * SECTOR_SIZE, (i + 1) * SECTOR_SIZE);
        this.storage.sql.exec("INSERT OR REPLACE INTO disk (sector, data) VALUES (?, ?)", sector + i, bytes);
      }
    });
  }
}
