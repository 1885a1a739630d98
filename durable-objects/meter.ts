/**
 * What an object costs, counted the way Cloudflare bills Durable Objects
 * (https://developers.cloudflare.com/durable-objects/platform/pricing/):
 * - requests: each RPC method call, fetch and alarm is one; incoming
 *   WebSocket messages are counted apart (they are billed at 20:1);
 * - rows written to SQLite (an alarm set counts as one row);
 * - storage held (the SQLite database's size);
 * - active time: duration is billed while the object has a request in
 *   flight or a timer pending — an object with neither may hibernate, and is
 *   not billed for it even before it does.
 * And for the per-object request limit (~1,000/s): the busiest second seen.
 *
 * Each object keeps one Meter; `npm run bench` reads it through the object's
 * benchMeter() (bench/cost.bench.ts). Nothing here decides anything.
 */

import type { Clock } from "../src/protocol/ports.ts";

export interface MeterReading {
  /** When it was read (ms since the epoch). */
  at: number;
  requests: number;
  alarms: number;
  wsMessages: number;
  rowsWritten: number;
  storageBytes: number;
  activeMs: number;
  /** The most requests (alarms included) counted within one wall-clock second since the last reset. */
  peakRequestsPerSecond: number;
  /** The largest request received since the last reset: the bytes of its arguments' binary data and strings. */
  largestRequestBytes: number;
}

export type RequestKind = "request" | "alarm" | "ws";

export class Meter {
  /**
   * Meters by object id, kept at module level: an object that hibernates (no
   * request or timer for ~10 s, locally too) comes back as a new instance in
   * the same isolate, and its counts go on rather than start again. Dropped
   * when the object is destroyed.
   */
  private static readonly byObject = new Map<string, Meter>();

  /** The meter of the object `id`, for its new instance (called from its constructor). */
  static of(id: DurableObjectId): Meter {
    const key = id.toString();
    let m = Meter.byObject.get(key);
    if (!m) Meter.byObject.set(key, (m = new Meter()));
    else m.newInstance();
    return m;
  }

  /**
   * The previous instance is gone (hibernated, evicted or aborted): whatever
   * it had in flight will never settle, so it no longer keeps the object
   * active. Its counts stay.
   */
  private newInstance(): void {
    if (this.busy > 0) this.activeMs += Date.now() - this.busySince;
    this.busy = 0;
    this.timers.clear();
  }

  static forget(id: DurableObjectId): void {
    Meter.byObject.delete(id.toString());
  }

  private requests = 0;
  private alarms = 0;
  private wsMessages = 0;
  private rowsWritten = 0;
  /** Requests in flight plus timers pending: the object is active while it is above zero. */
  private busy = 0;
  private busySince = 0;
  private activeMs = 0;
  private second = 0;
  private inSecond = 0;
  private peak = 0;
  private largest = 0;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  /** Run one request of `kind` carrying `bytes`: counted, and the object is active until its result settles. */
  request<T>(kind: RequestKind, bytes: number, run: () => T): T {
    this.largest = Math.max(this.largest, bytes);
    if (kind === "ws") this.wsMessages++;
    else {
      this.requests++;
      if (kind === "alarm") this.alarms++;
      this.countInSecond();
    }
    this.begin();
    let result: T;
    try {
      result = run();
    } catch (e) {
      this.end();
      throw e;
    }
    if (result instanceof Promise) {
      return result.finally(() => this.end()) as T;
    }
    this.end();
    return result;
  }

  /** The object is active until `work` settles (work of its own, not a request: the pump running the guest). */
  async busyWhile<T>(work: () => Promise<T>): Promise<T> {
    this.begin();
    try {
      return await work();
    } finally {
      this.end();
    }
  }

  wrote(rows: number): void {
    this.rowsWritten += rows;
  }

  /** setTimeout that keeps the object active while it is pending (as a pending timer does deployed). */
  setTimeout(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
    this.begin();
    const handle = setTimeout(() => {
      if (this.timers.delete(handle)) this.end();
      fn();
    }, ms);
    this.timers.add(handle);
    return handle;
  }

  clearTimeout(handle: ReturnType<typeof setTimeout> | null): void {
    if (handle === null) return;
    clearTimeout(handle);
    if (this.timers.delete(handle)) this.end();
  }

  /** The object's clock for the protocol (src/protocol/ports.ts): its timers count as active time. */
  readonly clock: Clock = { now: () => Date.now(), sleep: (ms, cancel) => this.sleep(ms, cancel) };

  /** A promise that resolves after `ms`, the object active meanwhile; never, once `cancel` aborts (and the timer is cleared). */
  sleep(ms: number, cancel?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (cancel?.aborted) return;
      const handle = this.setTimeout(resolve, ms);
      cancel?.addEventListener("abort", () => this.clearTimeout(handle), { once: true });
    });
  }

  reading(storageBytes: number): MeterReading {
    const now = Date.now();
    this.countInSecond(0);
    return {
      at: now,
      requests: this.requests,
      alarms: this.alarms,
      wsMessages: this.wsMessages,
      rowsWritten: this.rowsWritten,
      storageBytes,
      activeMs: this.activeMs + (this.busy > 0 ? now - this.busySince : 0),
      peakRequestsPerSecond: Math.max(this.peak, this.inSecond),
      largestRequestBytes: this.largest,
    };
  }

  /** The bench's hook (each object's benchMeter): a reading, and a new peak and largest request from here on if asked (the counters themselves only grow: readers take differences). */
  bench(storage: DurableObjectStorage, resetPeak: boolean): MeterReading {
    const reading = this.reading(storage.sql.databaseSize);
    if (resetPeak) {
      this.peak = 0;
      this.inSecond = 0;
      this.largest = 0;
    }
    return reading;
  }

  private countInSecond(n = 1): void {
    const s = Math.floor(Date.now() / 1000);
    if (s !== this.second) {
      this.peak = Math.max(this.peak, this.inSecond);
      this.second = s;
      this.inSecond = 0;
    }
    this.inSecond += n;
  }

  private begin(): void {
    if (this.busy++ === 0) this.busySince = Date.now();
  }

  private end(): void {
    if (--this.busy === 0) this.activeMs += Date.now() - this.busySince;
  }
}

/**
 * Count every call of the named methods of a Durable Object class as a
 * request of `kind` to the instance's `meter`. The names are the class's
 * entry points (RPC methods, fetch, alarm, webSocketMessage) — not methods it
 * calls on itself, which would count twice.
 */
export function meterEntryPoints<T extends { meter: Meter }>(cls: { prototype: T }, kind: RequestKind, names: readonly (keyof T & string)[]): void {
  const proto = cls.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of names) {
    const original = proto[name];
    if (typeof original !== "function") throw new Error(`meterEntryPoints: ${name} is not a method`);
    proto[name] = function (this: T, ...args: unknown[]) {
      return this.meter.request(kind, payloadBytes(args), () => original.apply(this, args));
    };
  }
}

/**
 * What a request carries, near enough for the 32 MiB limit on an RPC message:
 * the bytes of its binary data and the length of its strings, a few levels
 * deep (a checkpoint frame is one array; an image, a list of segments).
 */
function payloadBytes(value: unknown, depth = 0): number {
  if (typeof value === "string") return value.length;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value.byteLength;
  if (depth >= 4 || value === null || typeof value !== "object") return 0;
  let n = 0;
  for (const v of Array.isArray(value) ? value : Object.values(value)) n += payloadBytes(v, depth + 1);
  return n;
}

/** The object's storage, with the rows its SQL statements write and the alarms it sets counted on `meter`. */
export function meteredStorage(storage: DurableObjectStorage, meter: Meter): DurableObjectStorage {
  const sql = new Proxy(storage.sql, {
    get(target, prop) {
      if (prop === "exec") {
        return (query: string, ...bindings: unknown[]) => {
          const cursor = target.exec(query, ...bindings);
          meter.wrote(cursor.rowsWritten);
          return cursor;
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return new Proxy(storage, {
    get(target, prop) {
      if (prop === "sql") return sql;
      if (prop === "setAlarm") {
        return (at: number | Date) => {
          meter.wrote(1);
          return target.setAlarm(at);
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
