/** Measurement hooks for `npm run bench` (bench/kemari.bench.ts); no API route reaches them. */
import type { Primary } from "../src/protocol/primary.ts";

export interface BenchSyncResult {
  ms: number;
  bytesSent: number;
  bytesDirtied: number;
  deltaSaved: number;
}

/**
 * Time `syncs` synchronisations of a paused guest, each after dirtying
 * `pages` pages: rewriting them whole with random bytes, or changing one
 * word in each (where delta compression shines).
 */
export function benchSync(p: Primary, syncs: number, pages: number, change: "rewrite" | "word"): Promise<BenchSyncResult> {
  const r = p.runner;
  return r.exclusive(async () => {
    const protection = p.protection!;
    await protection.replicate(async () => {});
    const rep = protection.replicator!;
    const mem = r.memory;
    const first = mem.pages - pages;
    const pool = Array.from({ length: 8 }, () => crypto.getRandomValues(new Uint8Array(4096)));
    const before = { ...rep.totals };
    const t0 = Date.now();
    for (let i = 0; i < syncs; i++) {
      for (let q = 0; q < pages; q++) {
        const addr = (first + q) * 4096;
        if (change === "rewrite") mem.write(addr, pool[(i + q) % pool.length]);
        else mem.writeU32(addr + ((i * 4) % 4096), i + 1);
      }
      await p.sync(rep);
    }
    return {
      ms: Date.now() - t0,
      bytesSent: rep.totals.sentBytes - before.sentBytes,
      bytesDirtied: rep.totals.dirtyBytes - before.dirtyBytes,
      deltaSaved: rep.totals.deltaSaved - before.deltaSaved,
    };
  });
}

interface FloorPeer {
  benchNothing(): Promise<number> | number;
  /** The same payload carried, not stored: what the RPC alone costs. */
  benchCarry(payload: Uint8Array): Promise<number> | number;
  benchWrite(payload: Uint8Array, pages: number): Promise<number> | number;
}

/** The floor a sync is compared with: an RPC to the secondary carrying the pages, which it writes to storage. */
export async function benchFloor(stub: FloorPeer, rounds: number, pages: number): Promise<{ ms: number; emptyMs: number; carryMs: number }> {
  // Page data plus a small header, like a checkpoint frame (SQLite does not compress, so content does not matter).
  const payload = new Uint8Array(pages * 4096 + 64).map((_, i) => (i * 31) & 0xff);
  let t0 = Date.now();
  for (let i = 0; i < rounds; i++) await stub.benchNothing();
  const emptyMs = Date.now() - t0;
  t0 = Date.now();
  for (let i = 0; i < rounds; i++) await stub.benchCarry(payload);
  const carryMs = Date.now() - t0;
  t0 = Date.now();
  for (let i = 0; i < rounds; i++) await stub.benchWrite(payload, pages);
  return { ms: Date.now() - t0, emptyMs, carryMs };
}

/** Write `pages` pages of `payload` as rows, in one transaction: the storage half of the floor. */
export function benchWrite(storage: DurableObjectStorage, payload: Uint8Array, pages: number): number {
  const sql = storage.sql;
  sql.exec("CREATE TABLE IF NOT EXISTS bench_pages (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
  storage.transactionSync(() => {
    for (let q = 0; q < pages; q++) sql.exec("INSERT OR REPLACE INTO bench_pages (idx, data) VALUES (?, ?)", q, payload.subarray(q * 4096, (q + 1) * 4096));
  });
  return pages;
}
