/**
 * A guest's switch: its port on the outside world, and the witness.
 *
 * - It records what the guest says (console chunks and packets, each under
 *   its ring index, so a repeat after a failover is kept once) and delivers
 *   inbound packets to the current primary.
 * - It decides, atomically, which host is primary, under a generation number.
 *   Outputs from any other generation are refused at its port (fencing), so a
 *   superseded primary can release nothing.
 * - It watches the primary (heartbeat from its alarm) and fails the guest over
 *   to the secondary when the primary is lost or silent; it assigns each new
 *   secondary (re-protection).
 *
 * The API reaches a guest only through its switch.
 */
import { DurableObject } from "cloudflare:workers";
import type { Output } from "../src/devices/backend.ts";
import type { Env } from "../src/env.ts";
import type { Image } from "../src/image/image.ts";
import { GuestError, outcome, unwrap, type Outcome } from "../src/host/errors.ts";
import { isProtected, type GuestConfig } from "../src/host/guest-config.ts";
import { lostHostStatus, type FailoverRecord, type GuestStatus, type HostPlace, type HostStatus, type Protection } from "../src/host/status.ts";
import type { Fault } from "../src/kemari/faults.ts";
import type { RecordReply, SecondaryReply } from "../src/kemari/protection.ts";
import type { PingReply } from "./guest-host.ts";
import { tokensEqual } from "../src/api/auth.ts";
import { encodeBase64 } from "../src/image/load.ts";
import { Timeline, encodeMessage, event, type StreamEvent } from "../src/events/messages.ts";
import { pickSecondaryRegion, type Region } from "../src/kemari/placement.ts";

interface SwitchMeta {
  config: GuestConfig;
  generation: number;
  primary: HostPlace;
  secondary: HostPlace | null;
  protection: Protection;
  /** Hosts created so far: names are `<guest>/host-<n>`. */
  hostCount: number;
  failovers: FailoverRecord[];
  /** Why the guest is gone, if a failure left no copy to fail over to. */
  lost: string | null;
  /**
   * The operator's intent: paused or not. Pausing is control, not guest
   * state, so it is not in any checkpoint; a takeover applies it.
   */
  paused: boolean;
}

/** Reads never return more than this in one response; `next` says where to go on. */
const MAX_CONSOLE_READ = 1 << 20;
const MAX_PACKETS_READ = 1000;
const MAX_FAILOVER_RECORDS = 50;

export class GuestSwitch extends DurableObject<Env> {
  private meta: SwitchMeta | null;
  private consoleBytes: number;
  private fencedReleases = 0;
  private lastSeen = Date.now();
  /** One failover at a time. */
  private failing: Promise<void> | null = null;
  private lastHost: HostStatus | null = null;
  /** The recent events, for dashboards that join late. */
  private readonly timeline = new Timeline();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS console (idx INTEGER PRIMARY KEY, offset INTEGER NOT NULL, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS packets (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS partitioned (name TEXT PRIMARY KEY, region TEXT)");
    const row = sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'switch'").toArray()[0];
    this.meta = row ? (JSON.parse(row.v) as SwitchMeta) : null;
    const end = sql.exec<{ n: number | null }>("SELECT MAX(offset + length(data)) AS n FROM console").one();
    this.consoleBytes = end.n ?? 0;
  }

  /** Create the guest: place its hosts, start it on the primary (which protects it first). */
  create(config: GuestConfig, image: Image, paused = false): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      if (this.meta) throw new GuestError("conflict", `guest ${config.id} exists`);
      const kemari = isProtected(config.mode);
      const primary: HostPlace = { name: `${config.id}/host-0`, region: kemari ? config.regions.primary : null };
      const secondary: HostPlace | null = kemari ? { name: `${config.id}/host-1`, region: config.regions.secondary } : null;
      const meta: SwitchMeta = {
        config,
        generation: 0,
        primary,
        secondary,
        protection: kemari ? "reprotecting" : "unprotected",
        hostCount: kemari ? 2 : 1,
        failovers: [],
        lost: null,
        paused,
      };
      this.save(meta);
      if (secondary) unwrap(await this.host(secondary).init(config, config.id, secondary, 0));
      unwrap(await this.host(primary).start(config, image, config.id, primary, secondary, paused));
      if (kemari) await this.heartbeatSoon(config.heartbeat.intervalMs);
      return this.describe();
    });
  }

  private save(meta: SwitchMeta): void {
    this.meta = meta;
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('switch', ?)", JSON.stringify(meta));
  }

  private host(place: HostPlace) {
    const ns = this.env.HOST;
    const id = ns.idFromName(place.name);
    return place.region ? ns.get(id, { locationHint: place.region as DurableObjectLocationHint }) : ns.get(id);
  }

  private current(): SwitchMeta {
    if (!this.meta) throw notFound();
    if (this.meta.lost) throw new GuestError("lost", this.meta.lost);
    return this.meta;
  }

  exists(): boolean {
    return this.meta !== null;
  }

  /** A no-op round trip: a host's way to yield its thread to queued requests (see GuestHost.yieldToRequests). */
  tick(): number {
    return 0;
  }

  // ---- The witness ----

  /** Outputs released by the primary of `generation`; a repeat of an identity is dropped. */
  record(generation: number, outputs: Output[]): RecordReply {
    const meta = this.meta;
    if (!meta || generation !== meta.generation) {
      this.fencedReleases += outputs.length;
      return { ok: false, reason: `generation ${generation} is superseded by ${meta?.generation ?? "none"}` };
    }
    const sql = this.ctx.storage.sql;
    const fresh: StreamEvent[] = [];
    this.ctx.storage.transactionSync(() => {
      for (const o of outputs) {
        if (o.device === "console") {
          const cur = sql.exec("INSERT OR IGNORE INTO console (idx, offset, data) VALUES (?, ?, ?)", o.index, this.consoleBytes, o.data);
          if (cur.rowsWritten > 0) {
            this.consoleBytes += o.data.length;
            fresh.push(event({ type: "output", device: "console", index: o.index, bytes: o.data.length, text: new TextDecoder().decode(o.data) }));
          }
        } else {
          const cur = sql.exec("INSERT OR IGNORE INTO packets (idx, data) VALUES (?, ?)", o.index, o.data);
          if (cur.rowsWritten > 0) fresh.push(event({ type: "output", device: "net", index: o.index, bytes: o.data.length, data: encodeBase64(o.data.subarray(0, 256)) }));
        }
      }
    });
    this.broadcast(fresh);
    return { ok: true };
  }

  /**
   * The primary of `generation` needs a secondary (its first, or because the
   * last one failed): assign a fresh host in another region.
   */
  async replaceSecondary(generation: number, failed: HostPlace | null): Promise<SecondaryReply> {
    const meta = this.meta;
    if (!meta || meta.lost || generation !== meta.generation) return { ok: false, reason: `generation ${generation} is superseded` };
    const primaryRegion = meta.primary.region as Region;
    // Not where the primary is, nor where a host just failed.
    const lastFailover = meta.failovers[meta.failovers.length - 1];
    const avoid = [failed?.region, meta.secondary?.region, lastFailover?.from.region].filter((r): r is Region => !!r);
    const region = pickSecondaryRegion(primaryRegion, avoid);
    const secondary: HostPlace = { name: `${meta.config.id}/host-${meta.hostCount}`, region };
    this.save({ ...meta, secondary, hostCount: meta.hostCount + 1, protection: "reprotecting" });
    if (meta.secondary) void this.host(meta.secondary).retire(generation + 1).catch(() => undefined);
    unwrap(await this.host(secondary).init(meta.config, meta.config.id, secondary, generation));
    return { ok: true, secondary };
  }

  /** The primary has sent `secondary` a full checkpoint: the guest is protected again. */
  secondaryReady(generation: number, secondary: HostPlace): void {
    const meta = this.meta;
    if (!meta || generation !== meta.generation || meta.secondary?.name !== secondary.name) return;
    this.save({ ...meta, protection: "protected" });
    this.broadcast([event({ type: "protected", generation, secondary })]);
  }

  /** A primary that restarted without its memory reports itself. */
  async primaryLost(generation: number): Promise<void> {
    if (this.meta && generation === this.meta.generation) await this.failover("the primary restarted and lost the guest's memory");
  }

  /**
   * Move the guest to the secondary under generation + 1. The decision is
   * saved before the secondary is told, so from that instant the old
   * primary's outputs are refused here and its checkpoints by the secondary.
   */
  failover(reason: string): Promise<void> {
    if (!this.failing) this.failing = this.takeOver(reason).finally(() => (this.failing = null));
    return this.failing;
  }

  private async takeOver(reason: string): Promise<void> {
    const meta = this.meta;
    if (!meta || meta.lost || !isProtected(meta.config.mode)) return;
    if (!meta.secondary || meta.protection !== "protected") {
      this.save({ ...meta, lost: `${reason}, and no secondary held a complete copy` });
      return;
    }
    const at = Date.now();
    const from = meta.primary;
    const to = meta.secondary;
    const generation = meta.generation + 1;
    // The decision, made durable before anyone is told: from here on the old
    // primary's outputs are refused. takeoverMs is filled in once it is done.
    const record: FailoverRecord = { generation, reason, from, to, at, takeoverMs: -1 };
    this.broadcast([event({ type: "failure", host: from, reason })]);
    const failovers = [...meta.failovers, record].slice(-MAX_FAILOVER_RECORDS);
    this.save({ ...meta, generation, primary: to, secondary: null, protection: "failing-over", failovers });
    const t0 = Date.now();
    const promoted = await this.host(to).promote(generation, meta.paused).catch((e: unknown) => ({ ok: false as const, detail: String(e) }));
    const now = this.meta!;
    if (!promoted.ok) {
      this.save({ ...now, lost: `${reason}; the secondary could not take over: ${promoted.detail}` });
      return;
    }
    // From the decision to the new primary's answer that the guest runs: the RPC included.
    record.takeoverMs = Date.now() - t0;
    this.broadcast([event({ type: "takeover", generation, from, to, takeoverMs: record.takeoverMs })]);
    // The new primary is re-protecting already (it may even have finished).
    const protection = now.protection === "failing-over" ? "reprotecting" : now.protection;
    this.save({ ...now, protection, failovers: now.failovers.map((f) => (f.generation === generation ? record : f)) });
    this.lastSeen = Date.now();
    void this.host(from).retire(generation).catch(() => undefined);
  }

  /** Heartbeat: ping the primary; a lost one fails over at once, a silent one after the timeout. */
  override async alarm(): Promise<void> {
    const meta = this.meta;
    if (!meta || meta.lost || !isProtected(meta.config.mode)) return;
    const { intervalMs, timeoutMs } = meta.config.heartbeat;
    if (!this.failing) {
      const reply = await withTimeout<PingReply>(this.host(meta.primary).ping(meta.generation), Math.min(timeoutMs, 1000)).catch(
        (e: unknown) => ({ ok: false as const, code: "unreachable" as const, reason: String(e) }),
      );
      if (this.meta?.generation === meta.generation) {
        if (reply.ok) {
          this.lastSeen = Date.now();
          if (reply.state === "halted" || reply.state === "crashed") return; // nothing left to protect
        } else if (reply.code === "lost") {
          await this.failover(`the primary ${meta.primary.name} lost the guest`);
        } else if (Date.now() - this.lastSeen >= timeoutMs) {
          await this.failover(`the primary ${meta.primary.name} was silent for ${Date.now() - this.lastSeen} ms`);
        }
      }
    }
    await this.heartbeatSoon(intervalMs);
  }

  private async heartbeatSoon(ms: number): Promise<void> {
    const due = Date.now() + ms;
    const cur = await this.ctx.storage.getAlarm();
    if (cur === null || cur > due) await this.ctx.storage.setAlarm(due);
  }

  /**
   * Inject a fault into one of the guest's hosts. A heal reconnects every
   * host of the guest that was cut off: after a failover the host that was
   * partitioned as primary is no longer "the primary", and healing it is how
   * a zombie comes back.
   */
  fault(f: Fault): Promise<Outcome<{ hosts: HostPlace[] }>> {
    return outcome(async () => {
      const meta = this.current();
      if (!isProtected(meta.config.mode) && (f.target === "secondary" || f.kind !== "crash")) {
        throw new GuestError("conflict", "a guest in mode none has no secondary and no links to cut", "target");
      }
      const cut = this.cutHosts();
      let hosts: HostPlace[];
      if (f.kind === "heal") {
        hosts = cut;
        this.ctx.storage.sql.exec("DELETE FROM partitioned");
      } else {
        const host = f.target === "primary" ? meta.primary : meta.secondary;
        if (!host) throw new GuestError("conflict", `the guest has no ${f.target} right now (it is ${meta.protection})`, "target");
        hosts = [host];
        if (f.kind === "partition") this.ctx.storage.sql.exec("INSERT OR REPLACE INTO partitioned (name, region) VALUES (?, ?)", host.name, host.region);
      }
      this.broadcast([event({ type: "fault", target: f.target, kind: f.kind, at: f.at, hosts })]);
      for (const h of hosts) unwrap(await this.host(h).fault(f.kind, f.at));
      // A crash now is noticed at the next heartbeat; make that soon.
      if (isProtected(meta.config.mode)) await this.heartbeatSoon(f.kind === "crash" && f.at === "now" ? 20 : meta.config.heartbeat.intervalMs);
      return { hosts };
    });
  }

  private cutHosts(): HostPlace[] {
    return this.ctx.storage.sql.exec<{ name: string; region: string | null }>("SELECT name, region FROM partitioned").toArray().map((r) => ({ name: r.name, region: r.region }));
  }

  /** What a host holds, for tests and the dashboard. */
  async hostDetail(target: "primary" | "secondary") {
    const meta = this.current();
    const place = target === "primary" ? meta.primary : meta.secondary;
    return place ? { place, detail: await this.host(place).replicaStatus() } : null;
  }

  // ---- The live event stream (src/events/messages.ts) ----

  /** Events from the primary of `generation` (syncs, the guest's state), batched. */
  publish(generation: number, events: StreamEvent[]): void {
    if (!this.meta || generation !== this.meta.generation) return;
    this.broadcast(events);
  }

  private broadcast(events: StreamEvent[]): void {
    if (events.length === 0) return;
    for (const e of events) this.timeline.push(e);
    const sockets = this.ctx.getWebSockets().filter(isAuthed);
    if (sockets.length === 0) return;
    const messages = events.map(encodeMessage);
    for (const ws of sockets) {
      try {
        for (const m of messages) ws.send(m);
      } catch {
        // A socket that is closing; its close handler tidies up.
      }
    }
  }

  /** A dashboard connects: accept the WebSocket (hibernatable) and wait for its token. */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (isAuthed(ws)) return; // the stream is one-way after auth
    let token = "";
    try {
      const m = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message)) as { type?: string; token?: unknown };
      if (m.type === "auth" && typeof m.token === "string") token = m.token;
    } catch {
      // not JSON: treated as a missing token
    }
    const expected = this.env.API_TOKEN;
    if (!expected || !(await tokensEqual(token, expected))) {
      ws.close(4401, "unauthorized");
      return;
    }
    let status: GuestStatus;
    try {
      status = await this.describe();
    } catch (e) {
      ws.close(4404, e instanceof GuestError ? e.detail : "no such guest");
      return;
    }
    ws.send(encodeMessage(this.timeline.snapshot(status)));
    // From now on it gets every event (the attachment survives hibernation).
    ws.serializeAttachment({ authed: true });
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    try {
      ws.close(code === 1005 ? 1000 : code, "bye");
    } catch {
      // already closed
    }
  }

  // ---- The outside world ----

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

  /**
   * Call the primary; if it turns out to have lost the guest, fail over at
   * once and call the new primary.
   */
  private async onPrimary<T>(fn: (host: ReturnType<GuestSwitch["host"]>) => Promise<Outcome<T>>): Promise<T> {
    await this.failing;
    let meta = this.current();
    let r = await this.call(meta, fn);
    if (!r.ok && (r.code === "lost" || r.code === "unavailable") && isProtected(meta.config.mode)) {
      if (r.code === "lost") await this.failover(`the primary ${meta.primary.name} lost the guest`);
      else await this.alarm(); // a heartbeat now: it fails over if the primary is gone
      if (this.current().generation !== meta.generation) {
        meta = this.current();
        r = await this.call(meta, fn);
      }
    }
    return unwrap(r);
  }

  /** One call to the primary; a host that dies during it answers "unavailable". */
  private async call<T>(meta: SwitchMeta, fn: (host: ReturnType<GuestSwitch["host"]>) => Promise<Outcome<T>>): Promise<Outcome<T>> {
    try {
      return await fn(this.host(meta.primary));
    } catch (e) {
      return { ok: false, code: "unavailable", detail: `the primary failed during the call (${String(e)}); retry` };
    }
  }

  /**
   * Pause and resume record the operator's intent first, and a takeover
   * applies it. So when such a call fails because the guest moved to a new
   * primary during it, the request has still done what was asked.
   */
  private async withIntent(paused: boolean, fn: (host: ReturnType<GuestSwitch["host"]>) => Promise<Outcome<HostStatus>>): Promise<void> {
    this.setPaused(paused);
    const generation = this.meta?.generation;
    try {
      await this.onPrimary(fn);
    } catch (e) {
      if (!(e instanceof GuestError) || this.meta?.generation === generation) throw e;
    }
  }

  private setPaused(paused: boolean): void {
    if (this.meta && this.meta.paused !== paused) this.save({ ...this.meta, paused });
  }

  private async describe(): Promise<GuestStatus> {
    if (!this.meta) throw notFound();
    let host: HostStatus;
    if (this.meta.lost) host = this.lastHost ?? lostHostStatus(this.meta.lost);
    else {
      host = await this.onPrimary((h) => h.status());
      this.lastHost = host;
    }
    const meta = this.meta;
    if (meta.lost) host = { ...host, state: "crashed", crash: { reason: meta.lost, pc: host.pc } };
    return {
      id: meta.config.id,
      name: meta.config.name,
      mode: meta.config.mode,
      memoryPages: meta.config.memoryPages,
      diskSectors: meta.config.diskSectors,
      createdAt: meta.config.createdAt,
      generation: meta.generation,
      protection: meta.protection,
      hosts: { primary: meta.primary, secondary: meta.secondary },
      heartbeat: isProtected(meta.config.mode) ? meta.config.heartbeat : null,
      epochMs: meta.config.mode === "remus" ? meta.config.epochMs : null,
      failovers: meta.failovers,
      fencedReleases: this.fencedReleases,
      ...host,
    };
  }

  status(): Promise<Outcome<GuestStatus>> {
    return outcome(() => this.describe());
  }

  pause(): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      await this.withIntent(true, (h) => h.pause());
      return this.describe();
    });
  }

  resume(): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      await this.withIntent(false, (h) => h.resume());
      return this.describe();
    });
  }

  step(instructions: number): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      await this.onPrimary((h) => h.step(instructions));
      return this.describe();
    });
  }

  inbound(packet: Uint8Array): Promise<Outcome<void>> {
    return outcome(() => this.onPrimary((h) => h.inbound(packet)));
  }

  memory(addr: number, len: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => this.onPrimary((h) => h.readMemory(addr, len)));
  }

  disk(sector: number, count: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => this.onPrimary((h) => h.readDisk(sector, count)));
  }

  destroy(): Promise<Outcome<void>> {
    return outcome(async () => {
      if (!this.meta) throw notFound();
      const meta = this.meta;
      this.meta = null;
      const hosts = new Set<string>();
      for (let i = 0; i < meta.hostCount; i++) hosts.add(`${meta.config.id}/host-${i}`);
      await Promise.all([...hosts].map((name) => this.host({ name, region: null }).destroy().catch(() => undefined)));
      this.consoleBytes = 0;
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
    });
  }
}

function isAuthed(ws: WebSocket): boolean {
  return (ws.deserializeAttachment() as { authed?: boolean } | null)?.authed === true;
}

function notFound(): GuestError {
  return new GuestError("not-found", "no such guest");
}

function withTimeout<T>(p: PromiseLike<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    p.then(
      (v) => { clearTimeout(t); resolve(v); },
      (e: unknown) => { clearTimeout(t); reject(e as Error); },
    );
  });
}
