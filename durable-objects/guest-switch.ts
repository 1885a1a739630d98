/**
 * A guest's switch: its port on the outside world. It records what the guest
 * says (console chunks and packets, each under its ring index, so a repeat
 * after a failover is kept once), delivers inbound packets to the current
 * primary, and is the witness that says which host is primary, under which
 * generation. The API reaches a guest only through its switch.
 */
import { DurableObject } from "cloudflare:workers";
import type { Output } from "../src/devices/backend.ts";
import type { Env } from "../src/env.ts";
import type { Image } from "../src/image/image.ts";
import { GuestError, outcome, unwrap, type Outcome } from "../src/host/errors.ts";
import type { GuestConfig } from "../src/host/guest-config.ts";
import type { GuestStatus, HostStatus } from "../src/host/status.ts";

interface SwitchMeta {
  config: GuestConfig;
  generation: number;
  primary: { name: string; region: string | null };
}

/** Reads never return more than this in one response; `next` says where to go on. */
const MAX_CONSOLE_READ = 1 << 20;
const MAX_PACKETS_READ = 1000;

export class GuestSwitch extends DurableObject<Env> {
  private meta: SwitchMeta | null;
  private consoleBytes: number;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS console (idx INTEGER PRIMARY KEY, offset INTEGER NOT NULL, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS packets (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    const row = sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'switch'").toArray()[0];
    this.meta = row ? (JSON.parse(row.v) as SwitchMeta) : null;
    const end = sql.exec<{ n: number | null }>("SELECT MAX(offset + length(data)) AS n FROM console").one();
    this.consoleBytes = end.n ?? 0;
  }

  /** Create the guest: choose its primary host and start it there. */
  create(config: GuestConfig, image: Image, region: string | null): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      if (this.meta) throw new GuestError("conflict", `guest ${config.id} exists`);
      const meta: SwitchMeta = { config, generation: 0, primary: { name: `${config.id}/host-0`, region } };
      this.save(meta);
      unwrap(await this.host(meta).start(config, image, config.id));
      return this.describe();
    });
  }

  private save(meta: SwitchMeta): void {
    this.meta = meta;
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('switch', ?)", JSON.stringify(meta));
  }

  private host(meta: SwitchMeta) {
    const ns = this.env.HOST;
    const id = ns.idFromName(meta.primary.name);
    const hint = meta.primary.region as DurableObjectLocationHint | null;
    return hint ? ns.get(id, { locationHint: hint }) : ns.get(id);
  }

  private primary() {
    if (!this.meta) throw notFound();
    return this.host(this.meta);
  }

  exists(): boolean {
    return this.meta !== null;
  }

  /** Outputs released by the primary; a repeat of an identity is dropped. */
  record(outputs: Output[]): void {
    const sql = this.ctx.storage.sql;
    this.ctx.storage.transactionSync(() => {
      for (const o of outputs) {
        if (o.device === "console") {
          const cur = sql.exec("INSERT OR IGNORE INTO console (idx, offset, data) VALUES (?, ?, ?)", o.index, this.consoleBytes, o.data);
          if (cur.rowsWritten > 0) this.consoleBytes += o.data.length;
        } else {
          sql.exec("INSERT OR IGNORE INTO packets (idx, data) VALUES (?, ?)", o.index, o.data);
        }
      }
    });
  }

  /** Console output from byte offset `from`: the text and the offset to ask for next. */
  console(from: number): Promise<Outcome<{ text: string; next: number }>> {
    return outcome(() => {
      if (!this.meta) throw notFound();
      return this.readConsole(from);
    });
  }

  private readConsole(from: number): { text: string; next: number } {
    const rows = this.ctx.storage.sql.exec<{ offset: number; data: ArrayBuffer }>(
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
  outbound(from: number): Promise<Outcome<{ packets: { index: number; data: Uint8Array }[]; next: number }>> {
    return outcome(() => {
      if (!this.meta) throw notFound();
      return this.readPackets(from);
    });
  }

  private readPackets(from: number): { packets: { index: number; data: Uint8Array }[]; next: number } {
    const rows = this.ctx.storage.sql.exec<{ idx: number; data: ArrayBuffer }>(
      "SELECT idx, data FROM packets WHERE idx >= ? ORDER BY idx LIMIT ?", from, MAX_PACKETS_READ).toArray();
    const packets = rows.map((r) => ({ index: r.idx, data: new Uint8Array(r.data) }));
    return { packets, next: packets.length > 0 ? packets[packets.length - 1].index + 1 : from };
  }

  private async describe(): Promise<GuestStatus> {
    if (!this.meta) throw notFound();
    const meta = this.meta;
    const host: HostStatus = unwrap(await this.primary().status());
    return {
      id: meta.config.id,
      name: meta.config.name,
      mode: meta.config.mode,
      memoryPages: meta.config.memoryPages,
      diskSectors: meta.config.diskSectors,
      createdAt: meta.config.createdAt,
      generation: meta.generation,
      protection: "unprotected",
      hosts: { primary: meta.primary },
      ...host,
    };
  }

  status(): Promise<Outcome<GuestStatus>> {
    return outcome(() => this.describe());
  }

  pause(): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      unwrap(await this.primary().pause());
      return this.describe();
    });
  }

  resume(): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      unwrap(await this.primary().resume());
      return this.describe();
    });
  }

  step(instructions: number): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      unwrap(await this.primary().step(instructions));
      return this.describe();
    });
  }

  inbound(packet: Uint8Array): Promise<Outcome<void>> {
    return outcome(async () => unwrap(await this.primary().inbound(packet)));
  }

  memory(addr: number, len: number): Promise<Outcome<Uint8Array>> {
    return outcome(async () => unwrap(await this.primary().readMemory(addr, len)));
  }

  disk(sector: number, count: number): Promise<Outcome<Uint8Array>> {
    return outcome(async () => unwrap(await this.primary().readDisk(sector, count)));
  }

  destroy(): Promise<Outcome<void>> {
    return outcome(async () => {
      if (!this.meta) throw notFound();
      await this.primary().destroy();
      this.meta = null;
      this.consoleBytes = 0;
      await this.ctx.storage.deleteAll();
    });
  }
}

function notFound(): GuestError {
  return new GuestError("not-found", "no such guest");
}
