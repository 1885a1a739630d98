/**
 * A guest's switch: its port on the outside world, and the witness. The
 * decisions — who is primary under which generation, takeover, fencing,
 * re-protection, output identity — are plain code in src/protocol/witness.ts;
 * this class adapts them to the platform:
 * - RPC from the API and from the guest's hosts;
 * - SQLite: the witness's meta, and the outputs (output-log.ts);
 * - the heartbeat alarm (durable: a restarted switch resumes its decisions);
 * - the live stream: hibernatable WebSockets and the timeline for late joiners.
 * The API reaches a guest only through its switch.
 */
import { DurableObject } from "cloudflare:workers";
import type { Output } from "../src/devices/backend.ts";
import type { Env } from "../src/env.ts";
import type { Image } from "../src/image/image.ts";
import { GuestError, outcome, type Outcome } from "../src/host/errors.ts";
import type { GuestConfig } from "../src/host/guest-config.ts";
import type { GuestStatus, HostPlace } from "../src/host/status.ts";
import type { Fault } from "../src/kemari/faults.ts";
import type { CheckInReply, RecordReply, SecondaryReply } from "../src/protocol/ports.ts";
import { Witness, notFound, type SwitchMeta, type WitnessStore } from "../src/protocol/witness.ts";
import { tokensEqual } from "../src/api/auth.ts";
import { OutputLog } from "./output-log.ts";
import { encodeBase64 } from "../src/image/load.ts";
import { Timeline, encodeMessage, event, type StreamEvent } from "../src/events/messages.ts";
import { updateGuest } from "../src/api/directory.ts";
import { SummaryReporter } from "../src/api/summary.ts";
import { Meter, meteredStorage, meterEntryPoints, type MeterReading } from "./meter.ts";


/** How long a new socket has to send its token. */
const AUTH_WITHIN_MS = 5000;
/** How soon the switch tells the primary again that a dashboard watches, when telling it failed. */
const WATCH_RETRY_MS = 1000;
/** An output event carries at most this many bytes of what was said (console text like packets): a snapshot stays small. */
const MAX_EVENT_BYTES = 256;

export class GuestSwitch extends DurableObject<Env> {
  /** What this object costs (meter.ts): read by the bench. */
  readonly meter: Meter;
  private readonly storage: DurableObjectStorage;
  private readonly witness: Witness<ReturnType<GuestSwitch["host"]>>;
  private readonly outputs: OutputLog;
  /** The recent events, for dashboards that join late. */
  private readonly timeline = new Timeline();
  /** The guest's summary in the directory, sent on coarse changes (src/api/summary.ts). */
  private readonly summary = new SummaryReporter((change) => updateGuest(this.env, this.witness.meta?.config.id ?? "", change));
  /** The guest's state as last seen (a status, or the stream): the summary's running/halted/crashed. */
  private lastState: GuestStatus["state"] = "running";
  /** A dashboard joined and the primary could not be told (tellWatched): the alarm tries again. */
  private watchUnsent = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.meter = Meter.of(ctx.id);
    this.storage = meteredStorage(ctx.storage, this.meter);
    const sql = this.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS partitioned (name TEXT PRIMARY KEY, region TEXT)");
    this.outputs = new OutputLog(this.storage);
    this.witness = new Witness({
      clock: this.meter.clock,
      store: this.store(),
      host: (place) => this.host(place),
      setAlarm: (at) => void this.alarmAt(at),
      events: (build) => this.broadcast(build()),
    });
    // A takeover decided before a restart is resumed at once.
    if (this.witness.meta?.takeover) void this.alarmAt(Date.now());
  }

  private store(): WitnessStore {
    const sql = this.storage.sql;
    return {
      loadMeta: () => {
        const row = sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'switch'").toArray()[0];
        if (!row) return null;
        const m = JSON.parse(row.v) as SwitchMeta;
        return { ...m, takeover: m.takeover ?? null, formerSecondaries: m.formerSecondaries ?? [] };
      },
      saveMeta: (meta) => {
        sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('switch', ?)", JSON.stringify(meta));
        this.reportSummary(meta);
      },
      recordOutputs: (outputs) => this.outputs.record(outputs),
      partitioned: () => sql.exec<{ name: string; region: string | null }>("SELECT name, region FROM partitioned").toArray().map((r) => ({ name: r.name, region: r.region })),
      setPartitioned: (h) => void (h ? sql.exec("INSERT OR REPLACE INTO partitioned (name, region) VALUES (?, ?)", h.name, h.region) : sql.exec("DELETE FROM partitioned")),
      clearAll: () => {
        this.outputs.forget();
        void this.storage.deleteAlarm();
        void this.storage.deleteAll();
      },
    };
  }

  private async alarmAt(at: number): Promise<void> {
    const cur = await this.storage.getAlarm();
    if (cur === null || cur > at) await this.storage.setAlarm(at);
  }

  private host(place: HostPlace) {
    const ns = this.env.HOST;
    const id = ns.idFromName(place.name);
    return place.region ? ns.get(id, { locationHint: place.region as DurableObjectLocationHint }) : ns.get(id);
  }


  // ---- The witness, over RPC ----

  create(config: GuestConfig, image: Image, paused = false): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      await this.witness.create(config, image, paused);
      return this.describe();
    });
  }

  record(generation: number, outputs: Output[]): RecordReply {
    const { reply, fresh } = this.witness.record(generation, outputs);
    this.broadcast(fresh.map((o) =>
      o.device === "console"
        ? event({ type: "output", device: "console", index: o.index, bytes: o.data.length, text: new TextDecoder().decode(o.data.subarray(0, MAX_EVENT_BYTES)) })
        : event({ type: "output", device: "net", index: o.index, bytes: o.data.length, data: encodeBase64(o.data.subarray(0, MAX_EVENT_BYTES)) })));
    return reply;
  }

  replaceSecondary(generation: number, failed: HostPlace | null, failedHeldCopy = false): Promise<SecondaryReply> {
    return this.witness.replaceSecondary(generation, failed, failedHeldCopy);
  }

  secondaryReady(generation: number, secondary: HostPlace): void {
    this.witness.secondaryReady(generation, secondary);
  }

  checkIn(generation: number): CheckInReply {
    return this.witness.checkIn(generation);
  }

  primaryLost(generation: number): Promise<void> {
    return this.witness.primaryLost(generation);
  }

  override async alarm(): Promise<void> {
    if (this.watchUnsent && this.ctx.getWebSockets().some(isAuthed)) await this.tellWatched();
    await this.witness.heartbeat();
  }

  fault(f: Fault): Promise<Outcome<{ hosts: HostPlace[] }>> {
    return outcome(() => this.witness.fault(f));
  }

  // ---- The live event stream (src/events/messages.ts) ----

  /** Events from the primary of `generation` (syncs, the guest's state), batched. Answers whether anybody watches (outbox.ts). */
  publish(generation: number, events: StreamEvent[]): boolean {
    const watched = this.ctx.getWebSockets().some(isAuthed);
    if (this.witness.meta?.generation !== generation) return watched;
    this.broadcast(events);
    const states = events.filter((e) => e.type === "guest");
    if (states.length > 0) {
      this.lastState = states[states.length - 1].state as GuestStatus["state"];
      this.reportSummary(this.witness.meta);
    }
    return watched;
  }

  /** The directory's summary follows coarse changes (mode, generation, protection, halted/crashed); the reporter sends only those. */
  private reportSummary(meta: SwitchMeta | null): void {
    if (!meta) return;
    this.summary.seen({ mode: meta.config.mode, generation: meta.generation, protection: meta.protection, state: meta.lost ? "crashed" : this.lastState });
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

  /**
   * A dashboard connects: accept the WebSocket (hibernatable) and wait for its
   * token, at most AUTH_WITHIN_MS — a socket that never authenticates is not
   * held open on our account.
   */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return new Response("expected a WebSocket upgrade", { status: 426 });
    const pair = new WebSocketPair();
    const ws = pair[1];
    this.ctx.acceptWebSocket(ws);
    ws.serializeAttachment({ stage: "waiting" } satisfies SocketStage);
    this.meter.setTimeout(() => {
      if (stageOf(ws) !== "authed") closeQuietly(ws, 4408, `no auth within ${AUTH_WITHIN_MS} ms`);
    }, AUTH_WITHIN_MS);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    // Auth is decided on the first message alone, before any other is read: it is marked taken
    // before the first await, so a second message arriving meanwhile is ignored, not judged.
    if (stageOf(ws) !== "waiting") return; // the stream is one-way after auth
    ws.serializeAttachment({ stage: "checking" } satisfies SocketStage);
    let token = "";
    try {
      const m = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message)) as { type?: string; token?: unknown };
      if (m.type === "auth" && typeof m.token === "string") token = m.token;
    } catch {
      // not JSON: treated as a missing token
    }
    const expected = this.env.API_TOKEN;
    if (!expected || !(await tokensEqual(token, expected))) {
      closeQuietly(ws, 4401, "unauthorized");
      return;
    }
    let status: GuestStatus;
    try {
      status = await this.describe();
    } catch (e) {
      closeQuietly(ws, 4404, e instanceof GuestError ? e.detail : "no such guest");
      return;
    }
    try {
      ws.send(encodeMessage(this.timeline.snapshot(status)));
    } catch {
      return; // it went away meanwhile
    }
    // From now on it gets every event (the attachment survives hibernation).
    ws.serializeAttachment({ stage: "authed" } satisfies SocketStage);
    // The primary sends routine events only while somebody watches (outbox.ts): tell it.
    await this.tellWatched();
  }

  /**
   * Tell the primary a dashboard watches. If the call fails it is asked again
   * from the alarm: an unwatched primary sends only coarse changes, so
   * nothing else would tell it.
   */
  private async tellWatched(): Promise<void> {
    const primary = this.witness.meta?.primary;
    if (!primary) return;
    try {
      await this.host(primary).watch();
      this.watchUnsent = false;
    } catch {
      this.watchUnsent = true;
      void this.alarmAt(Date.now() + WATCH_RETRY_MS);
    }
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
      if (!this.witness.meta) throw notFound();
      return this.outputs.console(from);
    });
  }

  /** Packets the guest sent, from net-tx index `from`. */
  outbound(from: number): Promise<Outcome<{ packets: { index: number; data: Uint8Array }[]; next: number }>> {
    return outcome(() => {
      if (!this.witness.meta) throw notFound();
      return this.outputs.packets(from);
    });
  }

  private async describe(): Promise<GuestStatus> {
    const s = await this.witness.describe((h) => h.status());
    this.lastState = s.state;
    this.summary.seen(s);
    return s;
  }

  status(): Promise<Outcome<GuestStatus>> {
    return outcome(() => this.describe());
  }

  pause(): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      await this.witness.withIntent(true, (h) => h.pause());
      return this.describe();
    });
  }

  resume(): Promise<Outcome<GuestStatus>> {
    return outcome(async () => {
      await this.witness.withIntent(false, (h) => h.resume());
      return this.describe();
    });
  }

  /** The guest as it is after the step, and how many instructions the step executed (a slice's worth at most). */
  step(instructions: number): Promise<Outcome<GuestStatus & { executed: number }>> {
    return outcome(async () => {
      const { executed } = await this.witness.onPrimary((h) => h.step(instructions), true);
      return { ...(await this.describe()), executed };
    });
  }

  inbound(packet: Uint8Array): Promise<Outcome<void>> {
    return outcome(() => this.witness.onPrimary((h) => h.inbound(packet), true));
  }

  memory(addr: number, len: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => this.witness.onPrimary((h) => h.readMemory(addr, len)));
  }

  /** The disk as the outside world is told it: acknowledged by default, or the primary's live disk. */
  disk(sector: number, count: number, view: "acked" | "live" = "acked"): Promise<Outcome<Uint8Array>> {
    return outcome(() => this.witness.onPrimary((h) => h.readDisk(sector, count, view)));
  }

  destroy(): Promise<Outcome<void>> {
    return outcome(async () => {
      await this.witness.destroy();
      Meter.forget(this.ctx.id);
    });
  }

  // ---- Measurement hook for `npm run bench` (no API route reaches it) ----

  benchMeter(resetPeak = false): MeterReading {
    return this.meter.bench(this.ctx.storage, resetPeak);
  }
}

// Every entry point is a billed request (meter.ts); the bench hook is not counted.
meterEntryPoints(GuestSwitch, "request", ["create", "record", "replaceSecondary", "secondaryReady", "checkIn", "primaryLost", "fault", "publish", "fetch", "console", "outbound", "status", "pause", "resume", "step", "inbound", "memory", "disk", "destroy"]);
meterEntryPoints(GuestSwitch, "alarm", ["alarm"]);
meterEntryPoints(GuestSwitch, "ws", ["webSocketMessage"]);

/** Where a socket is in its handshake (kept in its attachment, which survives hibernation). */
type SocketStage = { stage: "waiting" | "checking" | "authed" };

function stageOf(ws: WebSocket): SocketStage["stage"] {
  const a = ws.deserializeAttachment() as (SocketStage & { authed?: boolean }) | null;
  // A socket that hibernated under the previous code says `{authed: true}`.
  return a?.stage ?? (a?.authed ? "authed" : "waiting");
}

function isAuthed(ws: WebSocket): boolean {
  return stageOf(ws) === "authed";
}

function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closed
  }
}

