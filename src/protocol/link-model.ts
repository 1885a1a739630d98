/**
 * The link model: what a call between two of a guest's objects costs when
 * they sit in different regions, so that a local run (workerd, the tests,
 * the bench, the simulator) behaves as a deployment between regions does —
 * and a deployed one can be made to look further apart, for a demonstration
 * (the model adds to the real network).
 *
 * Each direction of a link is a FIFO with a bandwidth: a message waits for
 * the ones before it to finish transmitting (bytes / bandwidth), then
 * travels half the round trip; it never arrives before an earlier one. A
 * call is its request one way, the callee's work, its reply the other way.
 * The model is applied by the caller (the callee does not know who calls),
 * so each caller holds its own links.
 */
import type { Latency } from "../host/guest-config.ts";
import type { Region } from "../kemari/placement.ts";
import type { Clock } from "./ports.ts";

export interface LinkSpec {
  rttMs: number;
  /** Megabits per second; null: not limited. */
  mbps: number | null;
}

/** The bandwidth "by-region" assumes between regions. */
export const BY_REGION_MBPS = 1000;

/**
 * Typical round trips, in milliseconds, between the Durable Object location
 * hints, each represented by one city: wnam San Francisco, enam New York,
 * sam São Paulo, weur London, eeur Warsaw, apac Singapore, oc Sydney, afr
 * Johannesburg, me Dubai. Medians of WonderNetwork's global ping statistics
 * (https://wondernetwork.com/pings), rounded to 5 ms; they drift by a few
 * milliseconds month to month, which is below what this model is for.
 */
const RTT_MS: Record<string, number> = {
  "wnam-enam": 70, "wnam-sam": 180, "wnam-weur": 140, "wnam-eeur": 165, "wnam-apac": 175, "wnam-oc": 150, "wnam-afr": 290, "wnam-me": 230,
  "enam-sam": 125, "enam-weur": 80, "enam-eeur": 105, "enam-apac": 235, "enam-oc": 205, "enam-afr": 230, "enam-me": 185,
  "sam-weur": 190, "sam-eeur": 215, "sam-apac": 330, "sam-oc": 310, "sam-afr": 340, "sam-me": 290,
  "weur-eeur": 30, "weur-apac": 165, "weur-oc": 265, "weur-afr": 160, "weur-me": 115,
  "eeur-apac": 180, "eeur-oc": 285, "eeur-afr": 180, "eeur-me": 110,
  "apac-oc": 95, "apac-afr": 265, "apac-me": 80,
  "oc-afr": 380, "oc-me": 190,
  "afr-me": 135,
};

/** The typical round trip between two regions (0 within one). */
export function regionRttMs(a: Region, b: Region): number {
  if (a === b) return 0;
  const ms = RTT_MS[`${a}-${b}`] ?? RTT_MS[`${b}-${a}`];
  if (ms === undefined) throw new Error(`no round trip known between ${a} and ${b}`);
  return ms;
}

/** What the model says of a link between regions `a` and `b`: null when it adds nothing. */
export function linkSpec(latency: Latency, a: Region | null, b: Region | null): LinkSpec | null {
  if (latency === "none" || a === null || b === null || a === b) return null;
  if (latency === "by-region") return { rttMs: regionRttMs(a, b), mbps: BY_REGION_MBPS };
  return { rttMs: latency.rttMs, mbps: latency.mbps ?? null };
}

/**
 * The modelled arrivals not yet delivered, of all of one object's links.
 * Each is delivered by a timer — or sooner, by its host between two slices
 * of the guest (`release`): workerd runs timers only when its event loop is
 * idle, so a busy guest would otherwise hold every message on its links
 * back until the loop went idle, and making it go idle at each arrival cost
 * a compute-bound Remus guest over a third of its time.
 */
export class Arrivals {
  private readonly waiting: { at: number; deliver: () => void }[] = [];

  /** Resolves at `at`: by `clock`'s timer, or by `release` once it is due. */
  wait(at: number, clock: Clock): Promise<void> {
    return new Promise<void>((resolve) => {
      // Delivered between slices, its timer is cancelled: a timer left to fire for nothing still wakes the event loop.
      const timer = new AbortController();
      const entry = {
        at,
        deliver: () => {
          const i = this.waiting.indexOf(entry);
          if (i < 0) return; // delivered already
          this.waiting.splice(i, 1);
          timer.abort();
          resolve();
        },
      };
      this.waiting.push(entry);
      clock.sleep(at - clock.now(), timer.signal).then(entry.deliver, () => undefined);
    });
  }

  /** Deliver every arrival due by `now`, in time order. */
  release(now: number): void {
    const due = this.waiting.filter((e) => e.at <= now).sort((a, b) => a.at - b.at);
    for (const e of due) e.deliver();
  }

  /** The earliest arrival still to come (null: none). */
  next(): number | null {
    let min: number | null = null;
    for (const e of this.waiting) if (min === null || e.at < min) min = e.at;
    return min;
  }
}

/** One direction of a link: a FIFO with a bandwidth. */
export class Lane {
  /** When the last message finishes transmitting, and when it arrives. */
  private busyUntil = 0;
  private lastArrival = 0;

  constructor(
    readonly spec: LinkSpec,
    private readonly clock: Clock,
    private readonly arrivals: Arrivals = new Arrivals(),
  ) {}

  /** Resolves when a message of `bytes` sent now arrives at the other end. */
  carry(bytes: number): Promise<void> {
    const now = this.clock.now();
    const txMs = this.spec.mbps === null ? 0 : (bytes * 8) / (this.spec.mbps * 1000);
    const start = Math.max(now, this.busyUntil);
    this.busyUntil = start + txMs;
    const arrival = Math.max(this.busyUntil + this.spec.rttMs / 2, this.lastArrival);
    this.lastArrival = arrival;
    return arrival > now ? this.arrivals.wait(arrival, this.clock) : Promise.resolve();
  }
}

/** Both directions of a link, as one caller sees them. */
export class Link {
  private readonly out: Lane;
  private readonly back: Lane;

  constructor(
    readonly spec: LinkSpec,
    clock: Clock,
    arrivals?: Arrivals,
  ) {
    this.out = new Lane(spec, clock, arrivals);
    this.back = new Lane(spec, clock, arrivals);
  }

  /** `fn` (the call), with its request carried there and its reply back. */
  async call<T>(requestBytes: number, fn: () => Promise<T>, replyBytes: (reply: T) => number = () => SMALL_MESSAGE_BYTES): Promise<T> {
    await this.out.carry(requestBytes);
    const reply = await fn();
    await this.back.carry(replyBytes(reply));
    return reply;
  }
}

/** What a control message (a heartbeat, a takeover's call, a small reply) is taken to weigh. */
export const SMALL_MESSAGE_BYTES = 256;

/** The links one object holds toward its peers, made as they are first used. */
export class LinkTable {
  private readonly links = new Map<string, Link>();
  /** What is on its way over any of them. */
  readonly arrivals = new Arrivals();

  constructor(private readonly clock: Clock) {}

  /** The link to `to` under `latency` (null: no delay), kept while its spec stays the same. */
  link(latency: Latency, from: Region | null, to: Region | null): Link | null {
    const spec = linkSpec(latency, from, to);
    if (!spec) return null;
    const key = `${from}>${to}:${spec.rttMs}:${spec.mbps}`;
    let link = this.links.get(key);
    if (link === undefined) {
      link = new Link(spec, this.clock, this.arrivals);
      this.links.set(key, link);
    }
    return link;
  }
}

/** Roughly what a message weighs on the wire: its byte arrays, plus a small header. */
export function messageBytes(value: unknown, depth = 0): number {
  if (value instanceof Uint8Array) return value.length;
  if (depth > 3 || value === null || typeof value !== "object") return depth === 0 ? SMALL_MESSAGE_BYTES : 8;
  let n = depth === 0 ? SMALL_MESSAGE_BYTES : 0;
  for (const v of Array.isArray(value) ? value : Object.values(value)) n += messageBytes(v, depth + 1);
  return n;
}

/**
 * `target` with every method call carried over `link()` (looked up at each
 * call: where the parties are may change, as a failover moves the primary).
 * Used on the ports, so the protocol and the simulator see the same delays.
 */
export function overLink<T extends object>(target: T, link: () => Link | null): T {
  return new Proxy(target, {
    get(t, key) {
      const v = Reflect.get(t, key) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        const l = link();
        // Called as a method of `t` (an RPC stub's methods are themselves proxies: no .apply on them).
        const call = () => Promise.resolve((t as Record<PropertyKey, (...a: unknown[]) => unknown>)[key](...args));
        return l ? l.call(messageBytes(args), call, (r) => messageBytes(r)) : call();
      };
    },
  });
}
