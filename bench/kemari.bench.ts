/**
 * Kemari's costs, each as a ratio to its baseline, measured in one run:
 * - sync latency against the floor (an RPC to the secondary carrying the
 *   same bytes, which it writes to storage) — target ≤ 1.5×;
 * - bytes sent per sync against bytes dirtied — target ≤ 1.0× plus a header;
 *   and what delta compression saves when little of each page changes;
 * - sync time of a 64 MiB guest against a 1 MiB guest with the same dirty
 *   set — target ≤ 1.1× (cost follows change, not memory size);
 * - takeover time from detection to the guest running again — target ≤ 50 ms
 *   for 64 MiB — measured first, on guests of its own (and again at the end,
 *   where a local artefact renews every host instance: see there).
 *
 * Inside workerd, clocks advance only on I/O; every figure here times many
 * round trips together, each of which is I/O.
 */
import { env } from "cloudflare:workers";
import { expect, it } from "vitest";
import { createGuest, status, waitFor } from "../test/helpers/api.ts";

const ROUNDS = Number(process.env.BENCH_SYNCS || 1000);
const BATCHES = 7;
const PER_BATCH = Math.max(10, Math.round(ROUNDS / BATCHES));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const SPIN = "_start:\n  j _start\n";
const rows: string[] = [];
const row = (name: string, figure: string, ratio: string, note: string) =>
  rows.push(`${name.padEnd(46)} ${figure.padStart(14)}   ${ratio.padStart(8)}   ${note}`);

async function primaryOf(pages: number) {
  const g = await createGuest({ asm: SPIN }, { memoryPages: pages, paused: true, heartbeat: { intervalMs: 50, timeoutMs: 2000 } });
  return { id: g.id, host: env.HOST.get(env.HOST.idFromName(g.hosts.primary.name)) };
}

/** Crash each guest's primary; the witness records detection → running, per guest. */
async function takeover(guests: { id: string }[]): Promise<number[]> {
  for (const g of guests) {
    const res = await env.SWITCH.get(env.SWITCH.idFromName(g.id)).fault({ target: "primary", kind: "crash", at: "now" });
    expect(res.ok).toBe(true);
  }
  const ms: number[] = [];
  for (const g of guests) {
    const s = await waitFor(g.id, (x) => x.failovers.length === 1 && x.failovers[0].takeoverMs >= 0, 30_000);
    ms.push(s.failovers[0].takeoverMs);
  }
  return ms;
}

it("measures Kemari", async () => {
  // Takeover first, on guests of its own with a few checkpoints behind them: the
  // secondary holds the last one in RAM, as a live secondary does (see the end).
  const victims = [await primaryOf(256), await primaryOf(16384)];
  for (const v of victims) await v.host.benchSync(20, 4, "rewrite");
  const takeovers = await takeover(victims);
  row("takeover, 1 MiB guest", `${takeovers[0].toFixed(1)} ms`, "", "detection to running (restore + ring reattach)");
  row("takeover, 64 MiB guest", `${takeovers[1].toFixed(1)} ms`, `${(takeovers[1] / 50).toFixed(2)}x`, "target <= 50 ms (<= 1.00x)");
  expect((await status(victims[1].id)).generation).toBe(1);

  const small = await primaryOf(256);
  const large = await primaryOf(16384);

  for (const pages of [1, 4, 64]) {
    await small.host.benchSync(20, pages, "rewrite"); // warm up
    // Alternate batches of syncs and of floor round trips, and compare medians,
    // so a noisy moment of this 2-core machine does not land on one side only.
    const syncMs: number[] = [];
    const floorMs: number[] = [];
    const emptyMs: number[] = [];
    const carryMs: number[] = [];
    let bytesSent = 0;
    let bytesDirtied = 0;
    for (let b = 0; b < BATCHES; b++) {
      const sync = await small.host.benchSync(PER_BATCH, pages, "rewrite");
      const floor = await small.host.benchFloor(PER_BATCH, pages);
      syncMs.push(sync.ms / PER_BATCH);
      floorMs.push(floor.ms / PER_BATCH);
      emptyMs.push(floor.emptyMs / PER_BATCH);
      carryMs.push(floor.carryMs / PER_BATCH);
      bytesSent += sync.bytesSent;
      bytesDirtied += sync.bytesDirtied;
    }
    const perSync = median(syncMs);
    const perFloor = median(floorMs);
    row(`sync, ${pages} dirty page(s), 1 MiB guest`, `${perSync.toFixed(3)} ms`, `${(perSync / perFloor).toFixed(2)}x`,
      `floor ${perFloor.toFixed(3)} ms (empty RPC ${median(emptyMs).toFixed(3)} ms); target <= 1.5x`);
    // Durability: the secondary's SQLite write before it acknowledges (the floor with the write, less the same RPC without it).
    const durableMs = Math.max(0, perFloor - median(carryMs));
    row(`  durability's share of the sync`, `${durableMs.toFixed(3)} ms`, `${((durableMs / perSync) * 100).toFixed(0)} %`,
      `SQLite write of ${pages} page(s) before the ack, of a ${perSync.toFixed(3)} ms sync`);
    const n = BATCHES * PER_BATCH;
    const header = (bytesSent - bytesDirtied) / n;
    row(`  bytes sent / bytes dirtied`, `${(bytesSent / n).toFixed(0)} B`, `${(bytesSent / bytesDirtied).toFixed(3)}x`,
      `${(bytesDirtied / n).toFixed(0)} B dirtied + ${header.toFixed(0)} B header/sync; target <= 1.0x + header`);
  }

  const word = await small.host.benchSync(ROUNDS, 16, "word");
  row("delta: one word changed in each of 16 pages", `${(word.bytesSent / ROUNDS).toFixed(0)} B`, `${(word.bytesSent / word.bytesDirtied).toFixed(3)}x`,
    `saved ${((word.deltaSaved / word.bytesDirtied) * 100).toFixed(1)} % of ${(word.bytesDirtied / ROUNDS).toFixed(0)} B dirtied per sync`);

  await large.host.benchSync(20, 4, "rewrite");
  const smallMs: number[] = [];
  const largeMs: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    smallMs.push((await small.host.benchSync(PER_BATCH, 4, "rewrite")).ms / PER_BATCH);
    largeMs.push((await large.host.benchSync(PER_BATCH, 4, "rewrite")).ms / PER_BATCH);
  }
  row("sync, 4 dirty pages: 64 MiB vs 1 MiB guest", `${median(largeMs).toFixed(3)} ms`, `${(median(largeMs) / median(smallMs)).toFixed(2)}x`,
    `1 MiB: ${median(smallMs).toFixed(3)} ms; target <= 1.1x`);

  // The same crash at the end of the sync loops above: locally, a crash after the 4- and
  // 64-page loops renews host instances (checked by identity; fresh guests crashed then
  // took ~350 ms even at 1 MiB), and a renewed secondary reads its copy back from SQLite
  // cold. Not the takeover the target is about; kept as a row so the artefact stays visible.
  const late = await takeover([small, large]);
  row("  the same after the sync loops above", `${late[0].toFixed(0)} / ${late[1].toFixed(0)} ms`, "",
    "1 MiB / 64 MiB; locally a crash here renews host instances, which read their copies back cold (cause not found; docs/bench-history.md)");
  expect((await status(large.id)).generation).toBe(1);

  console.log(`\nKemari synchronisation (${ROUNDS} syncs per figure)\n${"benchmark".padEnd(46)} ${"figure".padStart(14)}   ${"ratio".padStart(8)}   baseline\n${rows.join("\n")}`);
});
