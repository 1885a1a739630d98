/**
 * The list of guests, sharded: guest ids are spread over DIRECTORY_SHARDS
 * objects by a hash (src/api/directory.ts), so no single object takes every
 * create, delete and list (a Durable Object serves ~1,000 requests a second).
 * Each entry is a summary the guest's switch keeps up to date on coarse
 * changes only — mode, generation, protection, and whether it runs, halted or
 * crashed — never on a running/waiting flip: listing guests reads these
 * summaries and calls no guest. Pages go newest first, by (createdAt, id).
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../src/env.ts";
import type { GuestSummary, SummaryChange } from "../src/api/summary.ts";
import { Meter, meteredStorage, meterEntryPoints, type MeterReading } from "./meter.ts";

type Row = {
  id: string;
  name: string;
  created_at: number;
  mode: string | null;
  generation: number | null;
  protection: string | null;
  state: GuestSummary["state"];
};

export class Directory extends DurableObject<Env> {
  /** What this object costs (meter.ts): read by the bench. */
  readonly meter: Meter;
  private readonly storage: DurableObjectStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.meter = Meter.of(ctx.id);
    this.storage = meteredStorage(ctx.storage, this.meter);
    const sql = this.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS guests (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)");
    // Summaries (2026-12): a directory stored before them gains the columns, empty until the guest's switch reports.
    const columns = new Set(sql.exec<{ name: string }>("PRAGMA table_info(guests)").toArray().map((c) => c.name));
    for (const [name, type] of [["mode", "TEXT"], ["generation", "INTEGER"], ["protection", "TEXT"], ["state", "TEXT"]]) {
      if (!columns.has(name)) sql.exec(`ALTER TABLE guests ADD COLUMN ${name} ${type}`);
    }
    sql.exec("CREATE INDEX IF NOT EXISTS guests_newest ON guests (created_at DESC, id DESC)");
  }

  add(entry: GuestSummary): void {
    this.storage.sql.exec(
      "INSERT INTO guests (id, name, created_at, mode, generation, protection, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
      entry.id, entry.name, entry.createdAt, entry.mode, entry.generation, entry.protection, entry.state,
    );
  }

  /** The guest's switch reports a coarse change. False: no such entry here. */
  update(id: string, change: SummaryChange): boolean {
    return this.storage.sql.exec(
      "UPDATE guests SET mode = ?, generation = ?, protection = ?, state = ? WHERE id = ?",
      change.mode, change.generation, change.protection, change.state, id,
    ).rowsWritten > 0;
  }

  remove(id: string): boolean {
    return this.storage.sql.exec("DELETE FROM guests WHERE id = ?", id).rowsWritten > 0;
  }

  has(id: string): boolean {
    return this.storage.sql.exec("SELECT 1 FROM guests WHERE id = ?", id).toArray().length > 0;
  }

  /** Up to `limit` entries older than `before` (newest first; null: from the newest). */
  page(limit: number, before: { createdAt: number; id: string } | null): GuestSummary[] {
    const sql = this.storage.sql;
    const rows = before
      ? sql.exec<Row>("SELECT * FROM guests WHERE created_at < ? OR (created_at = ? AND id < ?) ORDER BY created_at DESC, id DESC LIMIT ?", before.createdAt, before.createdAt, before.id, limit)
      : sql.exec<Row>("SELECT * FROM guests ORDER BY created_at DESC, id DESC LIMIT ?", limit);
    return rows.toArray().map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at, mode: r.mode, generation: r.generation, protection: r.protection, state: r.state }));
  }

  benchMeter(resetPeak = false): MeterReading {
    return this.meter.bench(this.ctx.storage, resetPeak);
  }
}

// Every entry point is a billed request (meter.ts); the bench hook is not counted.
meterEntryPoints(Directory, "request", ["add", "update", "remove", "has", "page"]);
