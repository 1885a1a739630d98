/**
 * The witness: the guest's switch port on the outside world, and the one
 * party that decides, atomically and durably, which host is primary under
 * which generation (fencing by switch port, as HA clusters do).
 *
 * - It records what the guest says (console chunks and packets, each under
 *   its ring index, so a repeat after a failover is kept once) and refuses
 *   outputs of any generation but the current one.
 * - It watches the primary (heartbeats) and moves the guest to a host that
 *   holds a whole acknowledged copy when the primary is lost or silent. The
 *   decision is saved before anyone is told, and a saved decision is resumed
 *   after the witness's own restart. A guest is declared lost only when
 *   every host answered that it holds no whole copy.
 * - It assigns each new secondary (re-protection) and hears when one holds a
 *   whole copy.
 *
 * The GuestSwitch Durable Object adapts it to RPC, SQLite, alarms and
 * WebSockets; the simulator drives it with seeded ports.
 */
import type { Output } from "../devices/backend.ts";
import { GuestError, unwrap, type Outcome } from "../host/errors.ts";
import { isProtected, withDefaults, witnessRegion, type GuestConfig } from "../host/guest-config.ts";
import { lostHostStatus, type LinkStatus, type FailoverRecord, type GuestStatus, type HostPlace, type HostStatus, type Protection } from "../host/status.ts";
import type { Image } from "../image/image.ts";
import { describeWhen, type Fault } from "../kemari/faults.ts";
import { pickSecondaryRegion, type Region } from "../kemari/placement.ts";
import { event, type StreamEvent } from "../events/messages.ts";
import { LinkTable, linkSpec, overLink, type Link } from "./link-model.ts";
import type { CheckInReply, Clock, HoldReply, HostLink, PingReply, RecordReply, SecondaryReply } from "./ports.ts";
import { checkInEveryMs } from "./liveness.ts";
import { mutations } from "./mutations.ts";

export interface SwitchMeta {
  config: GuestConfig;
  generation: number;
  primary: HostPlace;
  secondary: HostPlace | null;
  protection: Protection;
  /** Hosts created so far: names are hostName(id, n). */
  hostCount: number;
  failovers: FailoverRecord[];
  /** Why the guest is gone, if a failure left no whole copy anywhere. */
  lost: string | null;
  /** The operator's intent: paused or not. Control, not guest state: a takeover applies it. */
  paused: boolean;
  /**
   * Secondaries of this generation that the primary replaced (unreachable, or
   * slow): each may still hold an acknowledged copy, the newest one if its
   * successor never received a whole checkpoint. Cleared at each takeover.
   */
  formerSecondaries: HostPlace[];
  /** A takeover decided (and saved) but not yet acknowledged by the new primary: resumed after a restart. */
  takeover: { from: HostPlace; to: HostPlace; reason: string } | null;
}

/** The one way a guest's hosts are named. */
export function hostName(guestId: string, n: number): string {
  return `${guestId}/host-${n}`;
}

export interface WitnessStore {
  loadMeta(): SwitchMeta | null;
  saveMeta(meta: SwitchMeta): void;
  /** Record outputs, atomically; a repeat of an identity is dropped. Returns the new ones. */
  recordOutputs(outputs: Output[]): Output[];
  partitioned(): HostPlace[];
  setPartitioned(host: HostPlace | null): void;
  clearAll(): void;
}

export interface WitnessIO<L extends HostLink> {
  clock: Clock;
  store: WitnessStore;
  host(place: HostPlace): L;
  /** Run `heartbeat()` at `at` (durable: it survives the witness's restart). */
  setAlarm(at: number): void;
  /** Tell the live stream (optional). */
  events?(build: () => StreamEvent[]): void;
}

const MAX_FAILOVER_RECORDS = 50;
/** A ping waits at most this long (or the timeout, if shorter). */
const PING_WAIT_MS = 1000;

/**
 * A primary whose guest is idle (waiting, paused, at a breakpoint) is pinged
 * this often instead of every heartbeat interval: an idle guest costs a ping
 * and an alarm every two seconds — one request a second — not five of each.
 * Anything sent to the guest through the witness (a packet, resume, step)
 * brings the heartbeat back at once, and an unanswered ping goes back to the
 * interval too. So the failure of an idle guest's primary is detected within
 * IDLE_HEARTBEAT_MS + the timeout (with the defaults, 2 s + 2 s). A running
 * guest's primary is not pinged while it checks in (liveness.ts).
 */
export const IDLE_HEARTBEAT_MS = 2000;

const IDLE_STATES = new Set(["waiting", "paused", "breakpoint"]);

export class Witness<L extends HostLink> {
  meta: SwitchMeta | null;
  fencedReleases = 0;
  private lastSeen: number;
  /** When the first ping since the last answered one went unanswered (null: none has). */
  private firstMiss: number | null = null;
  /** The next heartbeat is at the idle rate. */
  private idleBeat = false;
  /** When a call last woke the guest: an answer to a ping sent before it says nothing of the guest now. */
  private wokeAt = -Infinity;
  /**
   * When the primary last checked in, and of which generation: a sign of life
   * that spares it pings (liveness.ts) — only its own generation's, and only
   * while nothing says otherwise (`suspect`).
   */
  private checkedIn = { generation: -1, at: -Infinity, suspect: false };
  private failing: Promise<void> | null = null;
  private lastHost: HostStatus | null = null;

  private readonly io: WitnessIO<L>;
  private readonly links: LinkTable;

  constructor(io: WitnessIO<L>) {
    // Every call to a host is carried over the link model (src/protocol/link-model.ts).
    this.links = new LinkTable(io.clock);
    this.io = { ...io, host: (place) => overLink(io.host(place), () => this.linkTo(place)) };
    const stored = io.store.loadMeta();
    this.meta = stored && { ...stored, config: withDefaults(stored.config) };
    this.lastSeen = io.clock.now();
  }

  /** The modelled link from the switch to a host (null: none, or the model is off). */
  private linkTo(place: HostPlace): Link | null {
    const c = this.meta?.config;
    if (!c || c.latency === "none") return null;
    return this.links.link(c.latency, witnessRegion(c), (place.region as Region | null) ?? c.regions.primary);
  }

  private save(meta: SwitchMeta): void {
    this.meta = meta;
    this.io.store.saveMeta(meta);
  }

  private emit(build: () => StreamEvent[]): void {
    this.io.events?.(build);
  }

  private current(): SwitchMeta {
    if (!this.meta) throw notFound();
    if (this.meta.lost) throw new GuestError("lost", this.meta.lost);
    return this.meta;
  }

  /** Create the guest: place its hosts, start it on the primary (which protects it before it runs). */
  async create(config: GuestConfig, image: Image, paused: boolean): Promise<void> {
    if (this.meta) throw new GuestError("conflict", `guest ${config.id} exists`);
    const prot = isProtected(config.mode);
    const primary: HostPlace = { name: hostName(config.id, 0), region: prot ? config.regions.primary : null };
    const secondary: HostPlace | null = prot ? { name: hostName(config.id, 1), region: config.regions.secondary } : null;
    this.save({
      config, generation: 0, primary, secondary, protection: prot ? "reprotecting" : "unprotected",
      hostCount: prot ? 2 : 1, failovers: [], lost: null, paused, takeover: null, formerSecondaries: [],
    });
    // Heartbeats from the start: should `start`'s reply be lost, a failure is still noticed.
    if (prot) this.heartbeatSoon(config.heartbeat.intervalMs);
    if (secondary) unwrap(await this.io.host(secondary).init(config, config.id, secondary, 0));
    unwrap(await this.io.host(primary).start(config, image, config.id, primary, secondary, paused));
  }

  // ---- What the primary tells the witness ----

  /** Outputs released by the primary of `generation`; a repeat of an identity is dropped. */
  record(generation: number, outputs: Output[]): { reply: RecordReply; fresh: Output[] } {
    const meta = this.meta;
    if (!meta || generation !== meta.generation) {
      this.fencedReleases += outputs.length;
      return { reply: { ok: false, reason: `generation ${generation} is superseded by ${meta?.generation ?? "none"}` }, fresh: [] };
    }
    return { reply: { ok: true }, fresh: this.io.store.recordOutputs(outputs) };
  }

  /**
   * The primary of `generation` needs a secondary (its first, or the last one
   * failed): a fresh host in another region. The failed one, if it
   * acknowledged a checkpoint, is remembered as a takeover candidate: until a
   * new secondary holds a whole copy, it may hold the newest one.
   */
  async replaceSecondary(generation: number, failed: HostPlace | null, failedHeldCopy = false): Promise<SecondaryReply> {
    const meta = this.meta;
    if (!meta || meta.lost || generation !== meta.generation) return { ok: false, reason: `generation ${generation} is superseded` };
    // Not where the primary is, nor where a host just failed.
    const lastFailover = meta.failovers[meta.failovers.length - 1];
    const avoid = [failed?.region, meta.secondary?.region, lastFailover?.from.region].filter((r): r is Region => !!r);
    const region = pickSecondaryRegion(meta.primary.region as Region, avoid);
    const secondary: HostPlace = { name: hostName(meta.config.id, meta.hostCount), region };
    const formerSecondaries = failed && failedHeldCopy && !meta.formerSecondaries.some((f) => f.name === failed.name) ? [...meta.formerSecondaries, failed] : meta.formerSecondaries;
    // The name is taken (and the candidate remembered) before the host is told; it becomes the secondary only once it has been initialised.
    this.save({ ...meta, hostCount: meta.hostCount + 1, formerSecondaries });
    unwrap(await this.io.host(secondary).init(meta.config, meta.config.id, secondary, generation));
    const now = this.meta;
    if (!now || now.lost || now.generation !== generation) return { ok: false, reason: `generation ${generation} is superseded` };
    this.save({ ...now, secondary, protection: "reprotecting" });
    return { ok: true, secondary };
  }

  /** The primary has sent `secondary` a full checkpoint: the guest is protected again. */
  secondaryReady(generation: number, secondary: HostPlace): void {
    const meta = this.meta;
    if (!meta || generation !== meta.generation || meta.secondary?.name !== secondary.name) return;
    if (meta.protection === "protected") return;
    // From the new primary of a pending takeover, this also says that the takeover is done.
    this.save({ ...meta, protection: "protected", takeover: null, formerSecondaries: [] });
    this.emit(() => [event({ type: "protected", generation, secondary }, this.io.clock.now())]);
  }

  /** A busy primary asks whether it still is the primary of `generation`. */
  checkIn(generation: number): CheckInReply {
    const meta = this.meta;
    if (meta && generation === meta.generation) {
      // A sign of life: no ping needed while they come. Not an answer to a ping that went
      // unanswered, though: a primary that can call out but not be called (a one-way cut)
      // is still failed over once its pings have gone unanswered for the timeout.
      this.checkedIn = { generation, at: this.io.clock.now(), suspect: false };
      if (this.firstMiss === null) this.lastSeen = this.checkedIn.at;
      return { ok: true };
    }
    return { ok: false, generation: meta?.generation ?? -1, reason: `generation ${meta?.generation ?? "none"} runs elsewhere` };
  }

  /** A primary that restarted without its memory reports itself. */
  async primaryLost(generation: number): Promise<void> {
    await this.failover("the primary restarted and lost the guest's memory", generation);
  }

  // ---- Takeover ----

  /**
   * Move the guest to a host that holds a whole copy, under generation + 1.
   * One at a time; and only if the guest is still at `generation` (a late
   * answer from a primary that was already replaced moves nothing).
   */
  failover(reason: string, generation: number): Promise<void> {
    if (!this.failing) this.failing = this.takeOver(reason, generation).finally(() => (this.failing = null));
    return this.failing;
  }

  private async takeOver(reason: string, generation: number): Promise<void> {
    const meta = this.meta;
    if (!meta || meta.lost || !isProtected(meta.config.mode) || meta.generation !== generation) return;
    if (!meta.takeover) {
      const to = await this.chooseSuccessor(meta);
      if (!this.meta || this.meta !== meta) return; // deleted, or moved on, meanwhile
      if (to === "retry") {
        // A host did not answer: ask again at the next heartbeat (even for a halted guest, whose heartbeats had stopped).
        this.heartbeatSoon(meta.config.heartbeat.intervalMs);
        return;
      }
      if (to === null) {
        this.save({ ...meta, lost: `${reason}, and no host holds a whole acknowledged copy` });
        return;
      }
      // The decision, durable before anyone is told: from here on the old primary's outputs are refused.
      const generation = meta.generation + 1;
      const record: FailoverRecord = { generation, reason, from: meta.primary, to, at: this.io.clock.now(), takeoverMs: -1 };
      this.emit(() => [event({ type: "failure", host: meta.primary, reason }, this.io.clock.now())]);
      this.save({
        ...meta, generation, primary: to, secondary: null, protection: "failing-over", formerSecondaries: [],
        failovers: [...meta.failovers, record].slice(-MAX_FAILOVER_RECORDS),
        takeover: { from: meta.primary, to, reason },
      });
    }
    await this.completeTakeover();
  }

  /**
   * Who can take over, newest copy first: the secondary, if it holds a whole
   * copy of this generation; else the secondary it replaced most recently
   * that does (the primary releases nothing between losing one secondary and
   * a new one holding a whole copy, so that copy is the newest); else a lost
   * primary that kept the copy it was promoted from (a restart of every host
   * during re-protection). "retry" when a host that may hold a newer copy
   * did not answer: the guest is not declared lost, nor rolled back.
   */
  private async chooseSuccessor(meta: SwitchMeta): Promise<HostPlace | null | "retry"> {
    if (meta.secondary && meta.protection === "protected") return meta.secondary;
    let unsure = false;
    const ask = async (place: HostPlace): Promise<HoldReply | null> => {
      try {
        return await this.io.host(place).holds();
      } catch {
        unsure = true;
        return null;
      }
    };
    if (meta.secondary) {
      const h = await ask(meta.secondary);
      if (h?.whole && h.role === "secondary" && h.copyGeneration === meta.generation) return meta.secondary;
    }
    if (unsure) return "retry";
    let best: { place: HostPlace; instructions: number } | null = null;
    for (const place of meta.formerSecondaries) {
      const h = await ask(place);
      if (h?.whole && h.role === "secondary" && h.copyGeneration === meta.generation && (!best || (h.instructions ?? 0) > best.instructions)) best = { place, instructions: h.instructions ?? 0 };
    }
    if (unsure) return "retry";
    if (best) return best.place;
    const p = await ask(meta.primary);
    if (p?.lost && p.whole && p.generation === meta.generation) return meta.primary;
    // A primary that answers and still runs the guest was only slow: nothing to take over.
    if (p && p.role === "primary" && !p.lost && p.generation === meta.generation) return "retry";
    return unsure ? "retry" : null;
  }

  /** Tell the chosen host to take over (again, if the witness restarted or the call failed). */
  private async completeTakeover(): Promise<void> {
    const meta = this.meta;
    if (!meta?.takeover) return;
    const { from, to, reason } = meta.takeover;
    const generation = meta.generation;
    const t0 = this.io.clock.now();
    let promoted: Outcome<{ takeoverMs: number }>;
    const retryLater = () => this.heartbeatSoon(meta.config.heartbeat.intervalMs);
    try {
      promoted = await this.io.host(to).promote(generation, meta.paused);
    } catch {
      return retryLater(); // the call failed: resumed at the next heartbeat
    }
    const now = this.meta;
    if (!now || now.generation !== generation) return; // deleted, or moved on, meanwhile
    if (!promoted.ok && !now.takeover) return; // completed meanwhile (secondaryReady from the new primary)
    if (!promoted.ok) {
      if (promoted.code === "unavailable") return retryLater();
      // It cannot (it holds no whole copy, or it took over and then lost the guest again):
      // it is now the failed primary of this generation. Decide again, from what the hosts hold.
      this.save({ ...now, takeover: null });
      return this.takeOver(`${reason}; ${to.name} could not take over (${promoted.detail})`, generation);
    }
    const takeoverMs = this.io.clock.now() - t0;
    this.emit(() => [event({ type: "takeover", generation, from, to, takeoverMs }, this.io.clock.now())]);
    // The new primary is re-protecting already (it may even have finished: then secondaryReady completed the takeover).
    const failovers = now.failovers.map((f) => (f.generation === generation ? { ...f, takeoverMs } : f));
    this.save({ ...now, protection: now.protection === "failing-over" ? "reprotecting" : now.protection, takeover: null, failovers });
    this.lastSeen = this.io.clock.now();
    this.firstMiss = null;
    if (from.name !== to.name) void this.io.host(from).retire(generation).catch(() => undefined);
  }

  // ---- Heartbeats ----

  /** Ping the primary; a lost one fails over at once, a silent one after the timeout; resume a saved takeover. */
  async heartbeat(): Promise<void> {
    const meta = this.meta;
    if (!meta || meta.lost || !isProtected(meta.config.mode)) return;
    const { intervalMs, timeoutMs } = meta.config.heartbeat;
    if (meta.takeover) await this.failover(meta.takeover.reason, meta.generation);
    else if (!this.failing) {
      // The primary checks in while it runs: no ping until its next check-in is an interval overdue
      // (unless a ping already went unanswered, or a call found the primary unavailable: `suspect`).
      const c = this.checkedIn;
      const fresh = c.generation === meta.generation && !c.suspect && this.firstMiss === null;
      const overdueAt = fresh ? c.at + checkInEveryMs(intervalMs) + intervalMs : -Infinity;
      const now = this.io.clock.now();
      if (now < overdueAt || (mutations.checkInsForever && c.at > -Infinity)) {
        this.heartbeatSoon(now < overdueAt ? overdueAt - now : intervalMs);
        return;
      }
      const asked = this.io.clock.now();
      const reply = await this.ping(meta, Math.min(timeoutMs, PING_WAIT_MS));
      let next = intervalMs;
      if (this.meta?.generation === meta.generation && !this.meta.lost) {
        if (reply.ok) {
          this.lastSeen = this.io.clock.now();
          this.firstMiss = null;
          if ((reply.state === "halted" || reply.state === "crashed") && this.meta.protection === "protected") return; // nothing left to protect
          if (IDLE_STATES.has(reply.state) && asked > this.wokeAt) next = Math.max(intervalMs, IDLE_HEARTBEAT_MS);
        } else if (reply.code === "lost") {
          await this.failover(`the primary ${meta.primary.name} lost the guest`, meta.generation);
        } else {
          // Silent: counted from the first unanswered ping (an idle guest's last answer may be a second old).
          this.firstMiss ??= asked;
          if (this.io.clock.now() - this.firstMiss >= timeoutMs) {
            await this.failover(`the primary ${meta.primary.name} was silent for ${this.io.clock.now() - this.lastSeen} ms`, meta.generation);
          }
        }
      }
      if (this.meta && !this.meta.lost) this.beat(next);
      return;
    }
    if (this.meta && !this.meta.lost) this.heartbeatSoon(intervalMs);
  }

  /** The next heartbeat in `ms` (the idle rate when longer than the interval). */
  private beat(ms: number): void {
    this.idleBeat = ms > (this.meta?.config.heartbeat.intervalMs ?? ms);
    this.heartbeatSoon(ms);
  }

  private async ping(meta: SwitchMeta, waitMs: number): Promise<PingReply> {
    const unreachable = (reason: string): PingReply => ({ ok: false, code: "unreachable", reason });
    // The wait ends with the answer: a timer left pending would keep the switch awake (and billed) for nothing.
    const answered = new AbortController();
    const timeout = this.io.clock.sleep(waitMs, answered.signal).then(() => unreachable(`no answer in ${waitMs} ms`));
    try {
      return await Promise.race([this.io.host(meta.primary).ping(meta.generation).catch((e: unknown) => unreachable(String(e))), timeout]);
    } finally {
      answered.abort();
    }
  }

  /** Something says the primary may be gone: its last check-in no longer spares it a ping. */
  private suspect(): void {
    this.checkedIn = { ...this.checkedIn, suspect: true };
  }

  heartbeatSoon(ms: number): void {
    this.io.setAlarm(this.io.clock.now() + ms);
  }

  // ---- Faults (teaching) ----

  /**
   * Inject a fault into one of the guest's hosts. A heal reconnects every
   * host that was cut off: after a failover the host partitioned as primary
   * is no longer "the primary", and healing it is how a zombie comes back.
   */
  async fault(f: Fault): Promise<{ hosts: HostPlace[] }> {
    const meta = this.current();
    if (!isProtected(meta.config.mode) && (f.target === "secondary" || f.kind !== "crash")) {
      throw new GuestError("conflict", "a guest in mode none has no secondary and no links to cut", "target");
    }
    let hosts: HostPlace[];
    if (f.kind === "heal") {
      hosts = this.io.store.partitioned();
      this.io.store.setPartitioned(null);
    } else {
      const host = f.target === "primary" ? meta.primary : meta.secondary;
      if (!host) throw new GuestError("conflict", `the guest has no ${f.target} right now (it is ${meta.protection})`, "target");
      hosts = [host];
      if (f.kind === "partition") this.io.store.setPartitioned(host);
    }
    this.emit(() => [event({ type: "fault", target: f.target, kind: f.kind, at: describeWhen(f.at), hosts }, this.io.clock.now())]);
    // A crash now is noticed at the next heartbeat: a ping (the primary's last check-in says nothing now), soon.
    if (f.kind === "crash" && f.at === "now" && hosts.some((h) => h.name === meta.primary.name)) this.suspect();
    for (const h of hosts) unwrap(await this.io.host(h).fault(f.kind, f.at));
    if (isProtected(meta.config.mode)) this.heartbeatSoon(f.kind === "crash" && f.at === "now" ? 20 : meta.config.heartbeat.intervalMs);
    return { hosts };
  }

  // ---- Requests for the guest, through its current primary ----

  /** Call the primary; if it turns out to have lost the guest, fail over at once and call the new primary. */
  /** `wakes`: the call may wake an idle guest (a packet, resume, step): it is watched at the full rate again. */
  async onPrimary<T>(fn: (host: L) => Promise<Outcome<T>>, wakes = false): Promise<T> {
    await this.failing;
    // A takeover decided but not acknowledged: finish it first (or say the guest is between hosts).
    if (this.meta?.takeover) await this.failover(this.meta.takeover.reason, this.meta.generation);
    if (this.meta?.takeover) throw new GuestError("unavailable", "the guest is moving to a new primary; retry");
    let meta = this.current();
    if (wakes) this.wokeAt = this.io.clock.now();
    if (wakes && this.idleBeat && isProtected(meta.config.mode)) this.beat(meta.config.heartbeat.intervalMs);
    let r = await this.call(meta, fn);
    if (!r.ok && (r.code === "lost" || r.code === "unavailable") && isProtected(meta.config.mode)) {
      if (r.code === "lost") await this.failover(`the primary ${meta.primary.name} lost the guest`, meta.generation);
      else {
        this.suspect();
        await this.heartbeat(); // a heartbeat now, a ping: it fails over if the primary is gone
      }
      if (this.current().generation !== meta.generation) {
        meta = this.current();
        r = await this.call(meta, fn);
      }
    }
    return unwrap(r);
  }

  /** One call to the primary; a host that dies during it answers "unavailable". */
  private async call<T>(meta: SwitchMeta, fn: (host: L) => Promise<Outcome<T>>): Promise<Outcome<T>> {
    try {
      return await fn(this.io.host(meta.primary));
    } catch (e) {
      return { ok: false, code: "unavailable", detail: `the primary failed during the call (${String(e)}); retry` };
    }
  }

  /**
   * Pause and resume record the operator's intent first, and a takeover
   * applies it: so when such a call fails because the guest moved to a new
   * primary during it, the request has still done what was asked.
   */
  async withIntent(paused: boolean, fn: (host: L) => Promise<Outcome<HostStatus>>): Promise<void> {
    const meta = this.current();
    if (meta.paused !== paused) this.save({ ...meta, paused });
    const generation = meta.generation;
    try {
      await this.onPrimary(fn, !paused);
    } catch (e) {
      if (!(e instanceof GuestError) || this.meta?.generation === generation) throw e;
    }
  }

  /** The guest as the API reports it: the witness's view plus the primary's (a live view). */
  async describe(primaryStatus: (host: L) => Promise<Outcome<HostStatus>>): Promise<GuestStatus> {
    if (!this.meta) throw notFound();
    let host: HostStatus;
    if (this.meta.lost) host = this.lastHost ?? lostHostStatus(this.meta.lost);
    else {
      host = await this.onPrimary(primaryStatus);
      this.lastHost = host;
    }
    const meta = this.meta;
    if (!meta) throw notFound();
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
      kemari: meta.config.mode === "kemari" ? meta.config.kemari : null,
      latency: meta.config.latency,
      links: describeLinks(meta),
      failovers: meta.failovers,
      fencedReleases: this.fencedReleases,
      ...host,
    };
  }

  /** Forget the guest: its hosts and everything stored. A takeover in flight sees `meta` gone and stops. */
  async destroy(): Promise<void> {
    if (!this.meta) throw notFound();
    const meta = this.meta;
    this.meta = null;
    const names = new Set<string>();
    for (let i = 0; i < meta.hostCount; i++) names.add(hostName(meta.config.id, i));
    await Promise.all([...names].map((name) => this.io.host({ name, region: null }).destroy().catch(() => undefined)));
    this.io.store.clearAll();
  }
}

export function notFound(): GuestError {
  return new GuestError("not-found", "no such guest");
}

/** The guest's links under its link model, for status: primary ↔ secondary, and each host ↔ the witness. */
function describeLinks(meta: SwitchMeta): LinkStatus[] {
  const c = meta.config;
  const at = (p: HostPlace | null) => (p ? ((p.region as Region | null) ?? c.regions.primary) : null);
  const w = witnessRegion(c);
  const pairs: [LinkStatus["from"], Region | null, LinkStatus["to"], Region | null][] = [
    ["primary", at(meta.primary), "secondary", at(meta.secondary)],
    ["primary", at(meta.primary), "witness", w],
    ["secondary", at(meta.secondary), "witness", w],
  ];
  const out: LinkStatus[] = [];
  for (const [from, a, to, b] of pairs) {
    if (a === null || b === null) continue;
    const spec = linkSpec(c.latency, a, b);
    out.push({ from, fromRegion: a, to, toRegion: b, rttMs: spec?.rttMs ?? 0, mbps: spec?.mbps ?? null });
  }
  return out;
}
