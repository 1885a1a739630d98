/** The list of guests: one object for the whole deployment, holding ids and names only. */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../src/env.ts";

export interface DirectoryEntry {
  id: string;
  name: string;
  createdAt: number;
}

export class Directory extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS guests (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)");
  }

  add(entry: DirectoryEntry): void {
    this.ctx.storage.sql.exec("INSERT INTO guests (id, name, created_at) VALUES (?, ?, ?)", entry.id, entry.name, entry.createdAt);
  }

  remove(id: string): void {
    this.ctx.storage.sql.exec("DELETE FROM guests WHERE id = ?", id);
  }

  has(id: string): boolean {
    return this.ctx.storage.sql.exec("SELECT 1 FROM guests WHERE id = ?", id).toArray().length > 0;
  }

  list(): DirectoryEntry[] {
    return this.ctx.storage.sql
      .exec<{ id: string; name: string; created_at: number }>("SELECT id, name, created_at FROM guests ORDER BY created_at, id")
      .toArray()
      .map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at }));
  }
}
