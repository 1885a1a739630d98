/**
 * What a guest costs on Cloudflare, per mode: each of its objects' meters
 * (durable-objects/meter.ts) read before and after a window — requests
 * (RPC calls, fetches, alarms), SQLite rows written, storage held and the
 * time the objects are active — for a guest waiting for input, a
 * compute-bound guest and the counter service at 40 requests/s; and, for the
 * per-object limits, the busiest second any one object saw and the largest
 * request it received, under each example guest at 0 and 80 ms.
 *
 * Prints a table "Cost per guest", one "Per-object limits", a line per
 * target, and `COST_JSON {...}` that `npm run bench` writes to bench/cost.json.
 */
import { env } from "cloudflare:workers";
import { it } from "vitest";
import counter from "../guests/counter.s?raw";
import echo from "../guests/echo.s?raw";
import journal from "../guests/journal.s?raw";
import streamer from "../guests/streamer.s?raw";
import stress from "../guests/stress.s?raw";
import workload from "../guests/workload.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import type { MeterReading } from "../durable-objects/meter.ts";
import { shardName, shardOf } from "../src/api/directory.ts";
import { client, createGuest, status } from "../test/helpers/api.ts";
import { sleep } from "../test/helpers/guests.ts";
import { COMPUTE_ASYNC } from "./compute-guest.ts";

const knobs = env as unknown as Record<string, string | undefined>;
/** Comma-separated sections to run (cost, limits); empty: all. */
const ONLY = knobs.BENCH_ONLY ?? "";
const want = (name: string) => ONLY === "" || ONLY.split(",").includes(name);

/**
 * Cloudflare's published prices for Durable Objects on the Workers Paid plan
 * (https://developers.cloudflare.com/durable-objects/platform/pricing/, read
 * 2026-12-02: requests and duration), beyond the plan's monthly allowances,
 * which this ignores. The SQLite storage prices (rows written, GB-month) are
 * as Cloudflare announced them; the copy of the page read here did not show
 * them.
 */
export const PRICES = {
  perMillionRequests: 0.15,
  /** Duration is billed for 128 MB per object, whatever it uses. */
  perMillionGBs: 12.5,
  objectGB: 0.128,
  perMillionRowsWritten: 1.0,
  perGBMonth: 0.2,
};

type Mode = "none" | "kemari" | "remus";
const MODES: Mode[] = ["none", "kemari", "remus"];
const at80 = { latency: { rttMs: 80, mbps: 1000 }, regions: { primary: "weur", secondary: "enam" } };

interface Metered {
  label: string;
  read(resetPeak?: boolean): Promise<MeterReading>;
}

/** A guest's objects: its switch, its hosts and its directory shard. */
async function objectsOf(s: GuestStatus): Promise<Metered[]> {
  const sw = env.SWITCH.get(env.SWITCH.idFromName(s.id));
  const out: Metered[] = [{ label: "switch", read: (r) => sw.benchMeter(r) }];
  for (const [label, place] of [["primary", s.hosts.primary], ["secondary", s.hosts.secondary]] as const) {
    if (!place) continue;
    const h = env.HOST.get(env.HOST.idFromName(place.name));
    out.push({ label, read: (r) => h.benchMeter(r) });
  }
  const d = env.DIRECTORY.get(env.DIRECTORY.idFromName(shardName(shardOf(s.id))));
  out.push({ label: "directory", read: (r) => d.benchMeter(r) });
  return out;
}

/** What the window's objects used: the meter's counts, summed over them (storage: held at the end). */
interface Usage extends Pick<MeterReading, (typeof COUNTED)[number] | "storageBytes"> {
  seconds: number;
  /** Per object: requests/s in the window, and its busiest second. */
  perObject: Record<string, { requestsPerSecond: number; active: number; peak: number; largestRequestBytes: number }>;
}

/** The meter's counters, which only grow: a window's use is their difference. */
const COUNTED = ["requests", "alarms", "wsMessages", "rowsWritten", "activeMs"] as const;

/**
 * The guest's objects' use over `ms`, while `during` runs (if given). The
 * busiest second and largest request cover the window (`fromStart`: the
 * objects' whole lives, their creation included).
 */
async function usage(s: GuestStatus, ms: number, during?: (until: number) => Promise<void>, fromStart = false): Promise<Usage> {
  const objects = await objectsOf(s);
  const before = await Promise.all(objects.map((o) => o.read(!fromStart)));
  const t0 = Date.now();
  if (during) await during(t0 + ms);
  else await sleep(ms);
  const after = await Promise.all(objects.map((o) => o.read()));
  const seconds = (Date.now() - t0) / 1000;
  const used = Object.fromEntries(COUNTED.map((k) => [k, after.reduce((n, r, i) => n + r[k] - before[i][k], 0)])) as Pick<MeterReading, (typeof COUNTED)[number]>;
  return {
    seconds,
    ...used,
    storageBytes: after.reduce((n, r) => n + r.storageBytes, 0),
    perObject: Object.fromEntries(objects.map((o, i) => [o.label, {
      requestsPerSecond: (after[i].requests - before[i].requests) / seconds,
      active: (after[i].activeMs - before[i].activeMs) / 1000 / seconds,
      peak: after[i].peakRequestsPerSecond,
      largestRequestBytes: after[i].largestRequestBytes,
    }])),
  };
}

async function until(id: string, ok: (s: GuestStatus) => boolean, what: string): Promise<GuestStatus> {
  const t0 = Date.now();
  let s = await status(id);
  while (!ok(s)) {
    if (Date.now() - t0 > 30_000) throw new Error(`${what}: not reached in 30 s (${s.state})`);
    await sleep(50);
    s = await status(id);
  }
  return s;
}

const ready = (s: GuestStatus) => s.state === "waiting" && s.devices.length === 4;

/** The counter service's requests, one every 25 ms (40/s), not waiting for replies, until `end`. */
async function requestsAt40(id: string, end: number): Promise<void> {
  let i = 0;
  for (let next = Date.now(); next < end; next += 25) {
    await sleep(Math.max(0, next - Date.now()));
    await client.send(id, new Uint8Array(new Uint32Array([1, ++i]).buffer));
  }
}

interface CostRow {
  guest: string;
  mode: Mode;
  requestsPerSecond: number;
  alarmsPerSecond: number;
  rowsWrittenPerSecond: number;
  storageBytes: number;
  /** Object-seconds active per second (1 = one object active all the time). */
  activeObjects: number;
  wsMessagesPerSecond: number;
  dollarsPerGuestHour: number;
  busiestObject: string;
  perObject: Usage["perObject"];
}

function costRow(guest: string, mode: Mode, u: Usage): CostRow {
  const rps = u.requests / u.seconds;
  const rows = u.rowsWritten / u.seconds;
  const active = u.activeMs / 1000 / u.seconds;
  const hour =
    (rps * 3600 * PRICES.perMillionRequests) / 1e6 +
    (active * 3600 * PRICES.objectGB * PRICES.perMillionGBs) / 1e6 +
    (rows * 3600 * PRICES.perMillionRowsWritten) / 1e6 +
    ((u.storageBytes / 1e9) * PRICES.perGBMonth) / 730;
  const [busiest] = Object.entries(u.perObject).sort((a, b) => b[1].requestsPerSecond - a[1].requestsPerSecond);
  return {
    guest, mode,
    requestsPerSecond: rps,
    alarmsPerSecond: u.alarms / u.seconds,
    rowsWrittenPerSecond: rows,
    storageBytes: u.storageBytes,
    activeObjects: active,
    wsMessagesPerSecond: u.wsMessages / u.seconds,
    dollarsPerGuestHour: hour,
    busiestObject: `${busiest[0]} ${busiest[1].requestsPerSecond.toFixed(1)}/s`,
    perObject: u.perObject,
  };
}

interface LimitRow {
  guest: string;
  mode: Mode;
  rttMs: number;
  peakObject: string;
  peakRequestsPerSecond: number;
  largestRequestBytes: number;
}

/** A compute-bound guest that says nothing for a long while: a console line every 4 G instructions (tens of seconds here). */
const QUIET_COMPUTE = COMPUTE_ASYNC.replace("li   s0, 6", "li   s0, 600").replace("li   s1, 8333333", "li   s1, 1000000000");

const LIMIT_GUESTS: [string, string][] = [
  ["streamer.s", streamer],
  ["workload.s", workload],
  ["journal.s", journal],
  ["stress.s", stress],
  ["compute-bound", COMPUTE_ASYNC.replace("li   s0, 6", "li   s0, 600")],
];

it("measures what a guest costs", async () => {
  const rows: CostRow[] = [];
  const limits: LimitRow[] = [];
  const costTargets: string[] = [];
  const limitTargets: string[] = [];
  const targetIn = (list: string[]) => (ok: boolean, text: string) => list.push(`target: ${text}: ${ok ? "yes" : "NO"}`);

  if (want("cost")) {
    const target = targetIn(costTargets);
    for (const mode of MODES) {
      // Waiting for input: the echo server, once it has settled (its idle save taken, heartbeats at the idle rate).
      const w = await createGuest({ asm: echo }, { mode });
      await until(w.id, (s) => s.state === "waiting", "echo waiting");
      await sleep(3000);
      rows.push(costRow("waiting for input (echo.s)", mode, await usage(await status(w.id), 10_000)));
      await client.remove(w.id);

      const c = await createGuest({ asm: QUIET_COMPUTE }, { mode });
      await sleep(1000);
      rows.push(costRow("compute-bound", mode, await usage(await status(c.id), 5000)));
      await client.remove(c.id);

      // The same with a console line every 33 M instructions (a few a second): each output is a sync and a record in kemari.
      const l = await createGuest({ asm: COMPUTE_ASYNC.replace("li   s0, 6", "li   s0, 600") }, { mode });
      await sleep(1000);
      rows.push(costRow("compute-bound, a line per 33 M instr.", mode, await usage(await status(l.id), 5000)));
      await client.remove(l.id);

      const k = await createGuest({ asm: counter }, { mode });
      await until(k.id, ready, "counter ready");
      rows.push(costRow("counter service, 40 requests/s", mode, await usage(await status(k.id), 5000, (end) => requestsAt40(k.id, end))));
      await client.remove(k.id);
    }
    const find = (guest: string, mode: Mode) => rows.find((r) => r.guest.startsWith(guest) && r.mode === mode)!;
    for (const mode of MODES) {
      const w = find("waiting", mode).requestsPerSecond;
      target(w <= 1, `a waiting guest, ${mode}: ${w.toFixed(2)} requests/s (<= 1)`);
      const c = rows.find((r) => r.guest === "compute-bound" && r.mode === mode)!.requestsPerSecond;
      if (mode === "remus") target(c <= 1000 / 25 + 5, `a compute-bound guest, remus: ${c.toFixed(1)} requests/s (<= its checkpoints, 40/s, + 5)`);
      else target(c <= 5, `a compute-bound guest, ${mode}: ${c.toFixed(1)} requests/s (<= 5)`);
    }
  }

  if (want("limits")) {
    const target = targetIn(limitTargets);
    for (const [guest, source] of LIMIT_GUESTS) {
      for (const rttMs of [0, 80]) {
        for (const mode of MODES) {
          // Created paused, so the window (from the objects' creation on) sees the guest's whole start.
          const g = await createGuest({ asm: source }, { mode, paused: true, ...(rttMs ? (mode === "none" ? { latency: at80.latency } : at80) : {}) });
          const u = await usage(g, 3000, async (end) => {
            await client.resume(g.id);
            await sleep(end - Date.now());
          }, true);
          const [name, o] = Object.entries(u.perObject).sort((a, b) => b[1].peak - a[1].peak)[0];
          limits.push({ guest, mode, rttMs, peakObject: name, peakRequestsPerSecond: o.peak, largestRequestBytes: Math.max(...Object.values(u.perObject).map((x) => x.largestRequestBytes)) });
          await client.remove(g.id);
        }
      }
    }
    const peak = limits.reduce((a, b) => (b.peakRequestsPerSecond > a.peakRequestsPerSecond ? b : a));
    target(peak.peakRequestsPerSecond <= 1000, `the busiest second of any one object: ${peak.peakRequestsPerSecond} requests (${peak.guest}, ${peak.mode}, ${peak.rttMs} ms, its ${peak.peakObject}) (<= 1,000)`);
    const largest = Math.max(...limits.map((l) => l.largestRequestBytes));
    target(largest <= 32 << 20, `the largest request any object received: ${(largest / (1 << 20)).toFixed(2)} MiB (<= 32 MiB)`);
  }

  const lines = ["Cost per guest (default settings, 0 ms; per second of the window unless said)"];
  lines.push(`${"guest".padEnd(38)} ${"mode".padEnd(7)} ${"req/s".padStart(7)} ${"alarms/s".padStart(9)} ${"rows/s".padStart(8)} ${"storage".padStart(9)} ${"active".padStart(7)} ${"$/guest-h".padStart(10)}   busiest object`);
  for (const r of rows) {
    lines.push(`${r.guest.padEnd(38)} ${r.mode.padEnd(7)} ${r.requestsPerSecond.toFixed(2).padStart(7)} ${r.alarmsPerSecond.toFixed(2).padStart(9)} ${r.rowsWrittenPerSecond.toFixed(1).padStart(8)} ${`${(r.storageBytes / 1024).toFixed(0)} KiB`.padStart(9)} ${r.activeObjects.toFixed(2).padStart(7)} ${r.dollarsPerGuestHour.toFixed(5).padStart(10)}   ${r.busiestObject}`);
  }
  lines.push(...costTargets, "", "Per-object limits (each example guest from its creation for 3 s; ~1,000 requests/s and 32 MiB per message)");
  lines.push(`${"guest".padEnd(16)} ${"mode".padEnd(7)} ${"rtt".padStart(5)} ${"busiest second".padStart(15)}   ${"largest request".padStart(16)}`);
  for (const l of limits) {
    lines.push(`${l.guest.padEnd(16)} ${l.mode.padEnd(7)} ${`${l.rttMs} ms`.padStart(5)} ${`${l.peakRequestsPerSecond} (${l.peakObject})`.padStart(15)}   ${`${(l.largestRequestBytes / 1024).toFixed(1)} KiB`.padStart(16)}`);
  }
  console.log([...lines, ...limitTargets].join("\n") + "\n\n");
  console.log(`COST_JSON ${JSON.stringify({ date: new Date().toISOString(), prices: PRICES, rows, limits, targets: [...costTargets, ...limitTargets] })}`);
}, 900_000);
