/**
 * The link model (src/protocol/link-model.ts) on a virtual clock: half the
 * round trip each way, a FIFO per direction, bytes / bandwidth on the wire.
 */
import { describe, expect, it } from "vitest";
import { Arrivals, Lane, Link, LinkTable, linkSpec, messageBytes, overLink, regionRttMs } from "../../src/protocol/link-model.ts";
import { SliceBudget } from "../../src/host/slice-budget.ts";
import { REGIONS } from "../../src/kemari/placement.ts";
import type { Clock } from "../../src/protocol/ports.ts";

/** A clock whose sleeps resolve in time order when `run` advances it. */
function virtualClock() {
  let now = 0;
  const timers: { at: number; resolve: () => void }[] = [];
  const clock: Clock = {
    now: () => now,
    sleep: (ms) => new Promise<void>((resolve) => timers.push({ at: now + ms, resolve })),
  };
  async function run(): Promise<void> {
    for (;;) {
      await new Promise((r) => setImmediate(r));
      timers.sort((a, b) => a.at - b.at);
      const t = timers.shift();
      if (!t) return;
      now = Math.max(now, t.at);
      t.resolve();
    }
  }
  return { clock, run, at: () => now };
}

describe("the link model", () => {
  it("knows a round trip between every two regions, symmetric, 0 within one, and weur ⇄ enam at 80 ms", () => {
    for (const a of REGIONS) for (const b of REGIONS) {
      expect(regionRttMs(a, b)).toBe(regionRttMs(b, a));
      if (a === b) expect(regionRttMs(a, b)).toBe(0);
      else expect(regionRttMs(a, b)).toBeGreaterThan(0);
    }
    expect(regionRttMs("weur", "enam")).toBe(80);
  });

  it("adds nothing when off, within a region, or for a party without a region", () => {
    expect(linkSpec("none", "weur", "enam")).toBeNull();
    expect(linkSpec("by-region", "weur", "weur")).toBeNull();
    expect(linkSpec({ rttMs: 50 }, "weur", null)).toBeNull();
    expect(linkSpec({ rttMs: 50 }, "weur", "apac")).toEqual({ rttMs: 50, mbps: null });
  });

  it("a call costs the round trip: half there, half back", async () => {
    const v = virtualClock();
    const link = new Link({ rttMs: 80, mbps: null }, v.clock);
    let calledAt = -1;
    const done = link.call(100, async () => {
      calledAt = v.at();
      return 1;
    });
    await v.run();
    expect(await done).toBe(1);
    expect(calledAt).toBe(40);
    expect(v.at()).toBe(80);
  });

  it("each direction is a FIFO with its bandwidth: messages queue behind each other and never overtake", async () => {
    const v = virtualClock();
    // 8 Mbps: 1000 bytes take 1 ms on the wire.
    const lane = new Lane({ rttMs: 20, mbps: 8 }, v.clock);
    const arrivals: [string, number][] = [];
    const big = lane.carry(100_000).then(() => arrivals.push(["big", v.at()]));
    const small = lane.carry(1000).then(() => arrivals.push(["small", v.at()]));
    await v.run();
    await Promise.all([big, small]);
    // big: 100 ms on the wire + 10 ms; small: waits for big, 1 ms on the wire + 10 ms.
    expect(arrivals).toEqual([["big", 110], ["small", 111]]);
  });

  it("carries every method of a port over the link, sized by its byte arrays", async () => {
    const v = virtualClock();
    const link = new Link({ rttMs: 10, mbps: 8 }, v.clock);
    const port = { async receive(frame: Uint8Array) { return frame.length; } };
    const slow = overLink(port, () => link);
    const r = slow.receive(new Uint8Array(10_000));
    await v.run();
    expect(await r).toBe(10_000);
    expect(messageBytes([new Uint8Array(10_000)])).toBeGreaterThan(10_000);
    // 10 ms of round trip, ≈ 10 ms on the wire out, a small reply back.
    expect(v.at()).toBeGreaterThan(20);
    expect(v.at()).toBeLessThan(21);
  });
});

describe("the arrivals a host slices the guest by", () => {
  it("knows the next modelled arrival of all its links until it is delivered", async () => {
    const { clock, run, at } = virtualClock();
    const table = new LinkTable(clock);
    const a = table.link({ rttMs: 80 }, "weur", "enam")!;
    const b = table.link({ rttMs: 20 }, "weur", "wnam")!;
    expect(table.arrivals.next()).toBeNull();
    const seen: number[] = [];
    const done = Promise.all([
      a.call(100, async () => seen.push(at())),
      b.call(100, async () => {
        // b's request has arrived (at 10); a's is still on its way, due at 40.
        seen.push(at());
        expect(table.arrivals.next()).toBe(40);
      }),
    ]);
    expect(table.arrivals.next()).toBe(10);
    await run();
    await done;
    expect(seen).toEqual([10, 40]);
    expect(table.arrivals.next()).toBeNull();
  });

  it("forgets one arrival at a time, even when two are due at the same moment", () => {
    const arrivals = new Arrivals();
    arrivals.add(5);
    arrivals.add(5);
    arrivals.add(3);
    arrivals.remove(3);
    expect(arrivals.next()).toBe(5);
    arrivals.remove(5);
    expect(arrivals.next()).toBe(5);
    arrivals.remove(5);
    expect(arrivals.next()).toBeNull();
  });
});

describe("a slice's budget", () => {
  it("turns milliseconds into instructions by the rate measured between slices, smoothed and bounded", () => {
    const budget = new SliceBudget();
    // Before any measurement: the cautious rate, 50k instructions a ms.
    expect(budget.next(0, 1000, 10)).toBe(500_000);
    // 2 M instructions in 10 ms: 200k a ms, averaged with the last estimate → 125k.
    expect(budget.next(2_000_000, 1010, 10)).toBe(1_250_000);
    // Under a ms since the last sample: the clock's coarseness, not a rate (no change).
    expect(budget.next(2_100_000, 1010.5, 10)).toBe(1_250_000);
    // A slow moment halves nothing at once: 100k in 10 ms → (125k + 10k) / 2.
    expect(budget.next(2_100_000 + 100_000 - 100_000, 1020, 1)).toBe(67_500);
    // Bounds: never under 20k instructions, never over 4 M.
    expect(budget.next(2_100_000, 1030, 0.01)).toBe(20_000);
    expect(budget.next(1e12, 1040, 10_000)).toBe(4_000_000);
  });

  it("does not count the time the guest was stopped as its rate", () => {
    const budget = new SliceBudget();
    budget.next(0, 0, 10);
    budget.next(1_000_000, 10, 10); // 100k a ms → 75k
    budget.restart();
    // A minute waiting, then running again: the first sample starts afresh.
    expect(budget.next(1_000_000, 60_010, 10)).toBe(750_000);
    expect(budget.next(2_000_000, 60_020, 10)).toBe(875_000);
  });
});
