/**
 * The simulated world: virtual time, a network with seeded delays, lost
 * calls, lost replies and partitions, and parties — the witness and the
 * hosts — that run the real protocol code (src/protocol/) and can crash at
 * any port call, restart (RAM lost, storage kept) or all restart together.
 *
 * One seed gives one exact run: every random choice comes from `rng`, time
 * is virtual, and the event loop runs one event at a time, letting every
 * promise it set off settle before the next (FoundationDB's simulation,
 * TigerBeetle's VOPR).
 */
import type { Output } from "../devices/backend.ts";
import { outcome, type Outcome } from "../host/errors.ts";
import type { HostPlace, HostStatus } from "../host/status.ts";
import { BACKSTOP_MS, Host, RUNNING_BACKSTOP_MS } from "../protocol/host.ts";
import type { Clock, HostIO, HostLink, StepFaults, WitnessLink } from "../protocol/ports.ts";
import { Witness } from "../protocol/witness.ts";
import { Random } from "./random.ts";
import { Guard, HostDurable, WitnessDurable } from "./stores.ts";

export interface NetworkOptions {
  /** One-way delay of a call, ms: uniform in [min, max]. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Chance that a call is lost before it arrives, and that its reply is lost. */
  dropCall: number;
  dropReply: number;
  /** Chance that the caller crashes at a port call (before it, or after it with the reply lost). */
  crashAtCall: number;
  /** Chance that a call is held up for long (a congested link): delivered up to `slowMs` late. */
  slowCall: number;
  slowMs: number;
}

/** What the simulated API link to a host can do (the witness's view, plus the API's calls). */
export interface SimHostLink extends HostLink {
  status(): Promise<Outcome<HostStatus>>;
  inbound(packet: Uint8Array): Promise<Outcome<void>>;
  readDisk(sector: number, count: number, view?: "acked" | "live"): Promise<Outcome<Uint8Array>>;
}

/**
 * What a dead incarnation awaits: a promise that never settles. A fresh one
 * each time: a shared one would keep every continuation ever parked on it
 * (and the worlds they reference) alive.
 */
function hang(): Promise<never> {
  return new Promise<never>(() => {});
}
/** Instructions per slice under the simulator: one virtual millisecond of guest code. */
const SIM_SLICE_INSTRUCTIONS = 20_000;

class Event {
  constructor(
    readonly at: number,
    readonly seq: number,
    readonly fn: () => void,
  ) {}
}

/** One incarnation of a party: the caller of a call. */
interface Caller {
  life: Life;
  inc: number;
}

/** A party's life: a new incarnation at each restart; a dead one's promises never settle. */
class Life {
  inc = 0;
  private kill: (() => void) | null = null;
  died: Promise<never> = this.fresh();

  private fresh(): Promise<never> {
    const p = new Promise<never>((_, reject) => (this.kill = () => reject(new Error("the callee crashed"))));
    p.catch(() => undefined);
    return p;
  }

  crash(): void {
    this.inc++;
    this.kill?.();
    this.died = this.fresh();
  }
}

export class SimHost {
  readonly durable = new HostDurable();
  readonly life = new Life();
  instance: Host | null = null;
  /** Cut off from everyone (a partition of this host). */
  cut = false;
  /** Cut off from the witness only. */
  cutFromWitness = false;
  alarm: number | null = null;

  constructor(readonly place: HostPlace) {}
}

export class World {
  now = 0;
  private seq = 0;
  private readonly queue: Event[] = [];
  readonly rng: Random;
  readonly trace: string[] = [];
  readonly hosts = new Map<string, SimHost>();
  readonly witnessDurable = new WitnessDurable();
  readonly witnessLife = new Life();
  private witnessInstance: Witness<SimHostLink> | null = null;
  /** Fault injection on or off (the liveness phase turns it off). */
  faultsOn = true;
  /**
   * This seed's planned crash (FoundationDB's "buggify"): the caller of the
   * `nth` call named `call` dies before it, or after it with its reply lost.
   * Rare windows (a crash right after secondaryReady, say) are reached this
   * way far more often than by a small chance at every call.
   */
  plan: { call: string; nth: number; after: boolean } | null = null;
  private calls = new Map<string, number>();
  /** Hooks for the checker. */
  onRecord: ((from: string, generation: number, outputs: Output[], accepted: boolean) => void) | null = null;
  onReceived: ((generation: number, index: number, packet: Uint8Array) => void) | null = null;
  /** A host is about to be promoted to `generation` (before it releases anything). */
  beforePromote: ((host: SimHost, generation: number) => void) | null = null;
  /** A primary captured checkpoint `seq` of `generation` (its machine is exactly the captured state now). */
  onCapture: ((host: Host, generation: number, seq: number) => void) | null = null;
  /** The primary of `generation` heard its secondary acknowledge checkpoint `seq`. */
  onSynced: ((secondary: string, generation: number, seq: number, full: boolean) => void) | null = null;
  onNewHost: ((host: SimHost) => void) | null = null;
  /** Every call as it leaves its caller (a scenario's trigger). */
  onCall: ((from: string, what: string) => void) | null = null;
  /** A host served a disk read (`view` as asked), at the moment it answered. */
  onDiskRead: ((sector: number, data: Uint8Array, view: "acked" | "live") => void) | null = null;

  constructor(
    seed: number,
    readonly net: NetworkOptions,
  ) {
    this.rng = new Random(seed);
  }

  log(s: string): void {
    this.trace.push(`${String(this.now).padStart(7)} ${s}`);
  }

  // ---- Time ----

  at(ms: number, fn: () => void): void {
    const e = new Event(this.now + Math.max(0, ms), this.seq++, fn);
    // A binary heap would do; runs are small, and insertion keeps (time, seq) order exact.
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const q = this.queue[mid];
      if (q.at < e.at || (q.at === e.at && q.seq < e.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, e);
  }

  /** An incarnation's clock: virtual time; a sleep cancelled before it ends never wakes (ports.ts). */
  private clockOf(life: Life, inc: number): Clock {
    return { now: () => this.now, sleep: (ms, cancel) => this.sleepAs(life, inc, ms).then(() => (cancel?.aborted ? hang() : undefined)) };
  }

  /** A sleep owned by one incarnation: it never wakes if that incarnation dies first. */
  sleepFor(life: Life, ms: number): Promise<void> {
    return this.sleepAs(life, life.inc, ms);
  }

  sleepAs(life: Life, inc: number, ms: number): Promise<void> {
    return new Promise((resolve) => this.at(ms, () => life.inc === inc && resolve()));
  }

  /** Run events until `until` (virtual ms) or until nothing is left. */
  async run(until: number): Promise<void> {
    while (this.queue.length > 0 && this.queue[0].at <= until) {
      const e = this.queue.shift()!;
      this.now = e.at;
      e.fn();
      await settle();
    }
    this.now = Math.max(this.now, until);
  }

  // ---- The network ----

  private delay(): number {
    const d = this.rng.int(this.net.minDelayMs, this.net.maxDelayMs);
    return this.faultsOn && this.rng.chance(this.net.slowCall) ? d + this.rng.int(0, this.net.slowMs) : d;
  }

  private linkCut(from: string, to: string): boolean {
    const f = this.hosts.get(from);
    const t = this.hosts.get(to);
    if (f?.cut || t?.cut) return true;
    if ((from === "witness" && t?.cutFromWitness) || (to === "witness" && f?.cutFromWitness)) return true;
    return false;
  }

  /**
   * One call from `from` (living as `life`) to `to`: a delay there, the call
   * itself on the callee's current incarnation, a delay back. Any leg may be
   * lost; the caller may crash around it; a caller that died meanwhile never
   * hears back.
   */
  async call<T>(from: string, caller: Caller, to: string, what: string, fn: () => T | Promise<T>, died: () => Promise<never>): Promise<T> {
    const { life, inc } = caller;
    // Code of a dead incarnation can still be running (a continuation that was already due when
    // another of its chains crashed it): it reaches no one, as nothing survives ctx.abort().
    if (life.inc !== inc) return hang();
    if (what !== "checkIn" && what !== "api") this.log(`${from}: ${what}`);
    this.onCall?.(from, what);
    const name = what.split(" ")[0];
    const n = (this.calls.get(name) ?? 0) + 1;
    this.calls.set(name, n);
    const planned = this.faultsOn && from !== "client" && this.plan?.call === name && this.plan.nth === n;
    if (planned && !this.plan!.after) {
      this.crash(from, `before ${what} (planned)`);
      return hang();
    }
    if (this.faultsOn && from !== "client" && this.rng.chance(this.net.crashAtCall)) {
      this.crash(from, `before ${what}`);
      return hang();
    }
    // Every leg is slept as the incarnation that made the call: if it dies meanwhile, it never wakes.
    await this.sleepAs(life, inc, this.delay());
    if (this.linkCut(from, to) || (this.faultsOn && this.rng.chance(this.net.dropCall))) {
      await this.sleepAs(life, inc, this.delay());
      throw new Error(`${what}: link down`);
    }
    let result!: T;
    let failed: { error: unknown } | null = null;
    try {
      result = await Promise.race([Promise.resolve().then(fn), died()]);
    } catch (error) {
      failed = { error };
    }
    await this.sleepAs(life, inc, this.delay());
    if (life.inc !== inc) return hang();
    if (failed) throw failed.error;
    if (planned) {
      this.crash(from, `after ${what}, its reply lost (planned)`);
      return hang();
    }
    if (this.linkCut(from, to) || (this.faultsOn && this.rng.chance(this.net.dropReply))) throw new Error(`${what}: reply lost`);
    if (this.faultsOn && from !== "client" && this.rng.chance(this.net.crashAtCall)) {
      this.crash(from, `after ${what}, its reply lost`);
      return hang();
    }
    return result;
  }

  // ---- Parties ----

  host(place: HostPlace): SimHost {
    let h = this.hosts.get(place.name);
    if (!h) {
      h = new SimHost(place);
      this.hosts.set(place.name, h);
      this.onNewHost?.(h);
    }
    return h;
  }

  /** The host's live incarnation, started from its storage if it crashed (as a Durable Object restarts on its next request). */
  hostInstance(h: SimHost): Host {
    if (!h.instance) {
      const life = h.life;
      const inc = life.inc;
      const guard = new Guard(() => life.inc === inc, `${h.place.name}#${inc}`);
      const me: Caller = { life, inc };
      const io: HostIO = {
        clock: this.clockOf(life, inc),
        store: h.durable.view(guard),
        witness: this.witnessLinkFrom(h, me),
        peer: (place) => {
          const to = this.host(place);
          return {
            receive: (frame) => this.call(h.place.name, me, place.name, `receive → ${place.name}`, () => this.hostInstance(to).receive(frame), () => to.life.died),
            diskWrite: (g, s, d) => this.call(h.place.name, me, place.name, `diskWrite → ${place.name}`, () => this.hostInstance(to).diskWrite(g, s, d), () => to.life.died),
          };
        },
        faults: this.stepFaults(h),
        observer: {
          received: (g, index, packet) => this.onReceived?.(g, index, packet),
          captured: (g, seq) => {
            const me = h.instance;
            if (me) this.onCapture?.(me, g, seq);
          },
          synced: (g, stats) => {
            const role = h.instance?.role;
            const secondary = role?.kind === "primary" ? role.primary.secondary : null;
            if (secondary) this.onSynced?.(secondary.name, g, stats.seq, stats.full);
          },
        },
        schedule: () => this.schedule(h, inc),
        // A slice of guest code costs virtual time, so a guest that computes forever lets the world go on.
        yieldToRequests: () => this.sleepAs(life, inc, 1),
        turn: () => this.sleepAs(life, inc, 0),
        sliceInstructions: SIM_SLICE_INSTRUCTIONS,
      };
      h.instance = new Host(io);
      if (h.instance.role.kind === "lost") this.armHostAlarm(h, 0);
      // Resumed in place from its idle save, with an event pending: it runs at once.
      else if (h.instance.runnable) this.schedule(h, inc);
    }
    return h.instance;
  }

  private stepFaults(h: SimHost): StepFaults {
    return {
      at: (step) => {
        if (this.faultsOn && this.rng.chance(this.net.crashAtCall * 4)) {
          this.crash(h.place.name, `at ${step}`);
          return hang();
        }
      },
      minFrames: () => (this.faultsOn && this.rng.chance(0.2) ? 2 : 1),
    };
  }

  private witnessLinkFrom(h: SimHost, caller: Caller): WitnessLink {
    const me = h.place.name;
    const w = () => this.witness();
    const died = () => this.witnessLife.died;
    return {
      record: (g, outputs) =>
        this.call(me, caller, "witness", "record", () => {
          const { reply } = w().record(g, outputs);
          this.onRecord?.(me, g, outputs, reply.ok);
          return reply;
        }, died),
      replaceSecondary: (g, failed, held) => this.call(me, caller, "witness", "replaceSecondary", () => w().replaceSecondary(g, failed, held), died),
      secondaryReady: (g, s) => this.call(me, caller, "witness", "secondaryReady", () => w().secondaryReady(g, s), died),
      primaryLost: (g) => this.call(me, caller, "witness", "primaryLost", () => w().primaryLost(g), died),
      checkIn: (g) => this.call(me, caller, "witness", "checkIn", () => w().checkIn(g), died),
    };
  }

  /** The pump runs soon; a durable alarm is its backstop. */
  private schedule(h: SimHost, inc: number): void {
    this.at(0, () => {
      if (h.life.inc === inc && h.instance) void h.instance.pump().catch((e: unknown) => this.fail(h, e));
    });
    if (h.alarm === null) this.armHostAlarm(h, BACKSTOP_MS);
  }

  private armHostAlarm(h: SimHost, ms: number): void {
    const at = this.now + ms;
    if (h.alarm !== null && h.alarm <= at) return;
    h.alarm = at;
    this.at(ms, () => {
      if (h.alarm !== at) return;
      h.alarm = null;
      const host = this.hostInstance(h);
      if (host.role.kind === "lost") void host.reportLost();
      else if (host.runnable) {
        void host.pump().catch((e: unknown) => this.fail(h, e));
        this.armHostAlarm(h, RUNNING_BACKSTOP_MS);
      }
    });
  }

  private fail(h: SimHost, e: unknown): void {
    this.log(`!! ${h.place.name} threw: ${String(e)}`);
    throw e;
  }

  witness(): Witness<SimHostLink> {
    if (!this.witnessInstance) {
      const life = this.witnessLife;
      const inc = life.inc;
      const guard = new Guard(() => life.inc === inc);
      this.witnessInstance = new Witness<SimHostLink>({
        clock: this.clockOf(life, inc),
        store: this.witnessDurable.view(guard),
        host: (place) => this.hostLinkFromWitness(place, { life, inc }),
        setAlarm: (at) => this.armWitnessAlarm(at),
        events: (build) => {
          for (const e of build()) this.log(`witness: ${e.type} ${JSON.stringify({ ...e, v: undefined, t: undefined })}`);
        },
      });
      if (this.witnessInstance.meta?.takeover) this.armWitnessAlarm(this.now);
    }
    return this.witnessInstance;
  }

  armWitnessAlarm(at: number): void {
    const d = this.witnessDurable;
    if (d.alarm !== null && d.alarm <= at && d.alarm >= this.now) return;
    d.alarm = at;
    this.at(at - this.now, () => {
      if (d.alarm !== at) return;
      d.alarm = null;
      void this.witness().heartbeat();
    });
  }

  private hostLinkFromWitness(place: HostPlace, caller: Caller): SimHostLink {
    const h = this.host(place);
    const c = <T>(what: string, fn: (host: Host) => T | Promise<T>) =>
      this.call("witness", caller, place.name, `${what} → ${place.name}`, () => fn(this.hostInstance(h)), () => h.life.died);
    return {
      init: (config, sw, self, g) => c("init", (x) => outcome(() => x.init(config, sw, self, g))),
      start: (config, image, sw, self, secondary, paused) => c("start", (x) => outcome(() => x.start(config, image, sw, self, secondary, paused))),
      promote: (g, paused) =>
        c("promote", (x) => {
          this.beforePromote?.(h, g);
          return outcome(() => x.promote(g, paused));
        }),
      holds: () => c("holds", (x) => x.holds()),
      ping: (g) => c("ping", (x) => x.ping(g)),
      retire: (g) => c("retire", (x) => x.retire(g)),
      fault: () => Promise.resolve({ ok: true as const, value: undefined }),
      destroy: () => c("destroy", (x) => x.destroy()),
      status: () => c("status", (x) => outcome(() => x.status())),
      inbound: (packet) => c("inbound", (x) => outcome(() => x.inbound(packet))),
      readDisk: (s, n, view) =>
        c("readDisk", (x) =>
          outcome(() => {
            const data = x.readDisk(s, n, view);
            this.onDiskRead?.(s, data, view ?? "acked");
            return data;
          }),
        ),
    };
  }

  // ---- Faults ----

  /** A party dies (RAM lost, storage kept); it restarts on its next request or alarm. */
  crash(name: string, why: string): void {
    this.log(`crash ${name} ${why}`);
    if (name === "witness") {
      this.witnessLife.crash();
      this.witnessInstance = null;
      // Its alarm is durable: it fires into the next incarnation.
      if (this.witnessDurable.alarm !== null) {
        const at = this.witnessDurable.alarm;
        this.witnessDurable.alarm = null;
        this.armWitnessAlarm(Math.max(at, this.now));
      }
      return;
    }
    const h = this.hosts.get(name);
    if (!h) return;
    h.life.crash();
    h.instance = null;
    // A restarted primary's durable alarm, if one is pending (as deployed: up to RUNNING_BACKSTOP_MS
    // away), notices it lost its guest; else the witness does, once its check-ins stop.
  }

  /** Every host restarts at once (a deploy). */
  restartAllHosts(): void {
    this.log("restart every host");
    for (const name of [...this.hosts.keys()]) this.crash(name, "(restart all)");
  }

  /** The API's way in: through the witness, as the Worker does. */
  async api<T>(fn: (w: Witness<SimHostLink>) => Promise<T>): Promise<T> {
    const life = this.witnessLife;
    return this.call("client", { life: new Life(), inc: 0 }, "witness", "api", () => fn(this.witness()), () => life.died);
  }
}

/** Let every promise set off by an event settle before the next event. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

