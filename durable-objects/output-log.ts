/**
 * What the outside world has seen of a guest, kept by its switch in SQLite:
 * console chunks and sent packets, each under its ring index (its identity),
 * so a repeat after a failover is kept once.
 */
import type { Output } from "../src/devices/backend.ts";

/** Reads never return more than this in one response; `next` says where to go on. */
const MAX_CONSOLE_READ = 1 << 20;
const MAX_PACKETS_READ = 1000;

export class OutputLog {
  private consoleBytes: number;

  constructor(private readonly storage: DurableObjectStorage) {
    const sql = storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS console (idx INTEGER PRIMARY KEY, offset INTEGER NOT NULL, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS packets (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    const end = sql.exec<{ n: number | null }>("SELECT MAX(offset + length(data)) AS n FROM console").one();
    this.consoleBytes = end.n ?? 0;
  }

  /** Record outputs atomically; a repeat of an identity is dropped. Returns the new ones. */
  record(outputs: Output[]): Output[] {
    const sql = this.storage.sql;
    const fresh: Output[] = [];
    this.storage.transactionSync(() => {
      for (const o of outputs) {
        const cur = o.device === "console"
          ? sql.exec("INSERT OR IGNORE INTO console (idx, offset, data) VALUES (?, ?, ?)", o.index, this.consoleBytes, o.data)
          : sql.exec("INSERT OR IGNORE INTO packets (idx, data) VALUES (?, ?)", o.index, o.data);
        if (cur.rowsWritten === 0) continue;
        if (o.device === "console") this.consoleBytes += o.data.length;
        fresh.push(o);
      }
    });
    return fresh;
  }

  /** Console output from byte offset `from`: the text and the offset to ask for next. */
  console(from: number): { text: string; next: number } {
    const rows = this.storage.sql.exec<{ offset: number; data: ArrayBuffer }>(
      "SELECT offset, data FROM console WHERE offset + length(data) > ? ORDER BY offset", from).toArray();
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const row of rows) {
      const bytes = new Uint8Array(row.data);
      const part = bytes.subarray(Math.max(0, from - row.offset));
      if (total + part.length > MAX_CONSOLE_READ && total > 0) break;
      parts.push(part);
      total += part.length;
    }
    const joined = new Uint8Array(total);
    let at = 0;
    for (const p of parts) { joined.set(p, at); at += p.length; }
    const start = Math.min(from, this.consoleBytes);
    return { text: new TextDecoder().decode(joined), next: start + total };
  }

  /** Packets the guest sent, from net-tx index `from`. */
  packets(from: number): { packets: { index: number; data: Uint8Array }[]; next: number } {
    const rows = this.storage.sql.exec<{ idx: number; data: ArrayBuffer }>(
      "SELECT idx, data FROM packets WHERE idx >= ? ORDER BY idx LIMIT ?", from, MAX_PACKETS_READ).toArray();
    const packets = rows.map((r) => ({ index: r.idx, data: new Uint8Array(r.data) }));
    return { packets, next: packets.length > 0 ? packets[packets.length - 1].index + 1 : from };
  }

  /** The guest was deleted (its tables go with the object's storage). */
  forget(): void {
    this.consoleBytes = 0;
  }
}
