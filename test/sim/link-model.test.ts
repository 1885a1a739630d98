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
  const timers: { at: number; resolve: () => void; cancel?: AbortSignal }[] = [];
  const clock: Clock = {
    now: () => now,
    // A cancelled sleep never wakes (ports.ts); it stays in the list, as a timer cleared late would not.
    sleep: (ms, cancel) => new Promise<void>((resolve) => timers.push({ at: now + ms, resolve: () => (cancel?.aborted ? undefined : resolve()), cancel })),
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
  /** Timers still set to fire (not cancelled). */
  const armed = () => timers.filter((t) => !t.cancel?.aborted).length;
  return { clock, run, at: () => now, armed };
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

  it("delivers what is due when its host asks, in time order, without waiting for the timer — and only once", async () => {
    const { clock, run } = virtualClock();
    const arrivals = new Arrivals();
    const order: string[] = [];
    void arrivals.wait(30, clock).then(() => order.push("b"));
    void arrivals.wait(10, clock).then(() => order.push("a"));
    void arrivals.wait(50, clock).then(() => order.push("c"));
    // The host, between two slices at t = 40 (its clock says so; the timers have not run).
    arrivals.release(40);
    await Promise.resolve();
    await Promise.resolve();
    expect(order).toEqual(["a", "b"]);
    expect(arrivals.next()).toBe(50);
    // The timers then run: a and b are not delivered twice; c is delivered by its timer.
    await run();
    expect(order).toEqual(["a", "b", "c"]);
    expect(arrivals.next()).toBeNull();
  });

  it("cancels the timer of an arrival it delivers between slices (left set, it would wake every object's event loop for nothing)", async () => {
    const { clock, armed } = virtualClock();
    const arrivals = new Arrivals();
    void arrivals.wait(10, clock);
    void arrivals.wait(30, clock);
    void arrivals.wait(50, clock);
    expect(armed()).toBe(3);
    arrivals.release(40);
    // Only the arrival still to come keeps its timer (measured: left set, the timers cost a compute-bound Remus guest at 80 ms ~15 % of its rate).
    expect(armed()).toBe(1);
    expect(arrivals.next()).toBe(50);
  });
});

describe("a slice's budget", () => {
  it("turns milliseconds into instructions by the rate measured inside slices, smoothed and bounded", () => {
    const budget = new SliceBudget();
    // Before any measurement: the cautious rate, 50k instructions a ms.
    expect(budget.next(0, 1000, 10)).toBe(500_000);
    // 2 M instructions in a 10 ms slice: 200k a ms, averaged with the last estimate → 125k.
    budget.ran(2_000_000, 1010);
    // The yield after it (5 ms) is not the guest's time.
    expect(budget.next(2_000_000, 1015, 10)).toBe(1_250_000);
    // Slices under a ms are summed until they make a sample: 2 × 0.5 ms of 150k each → 300k a ms → 212.5k.
    budget.ran(2_150_000, 1015.5);
    expect(budget.next(2_150_000, 1016, 10)).toBe(1_250_000);
    budget.ran(2_300_000, 1016.5);
    expect(budget.next(2_300_000, 1017, 1)).toBe(212_500);
    // Bounds: never under 20k instructions, never over 4 M.
    expect(budget.next(2_300_000, 1018, 0.01)).toBe(20_000);
    expect(budget.next(2_300_000, 1019, 10_000)).toBe(4_000_000);
  });

  it("with a clock that stands still in slices, estimates from whole cycles, never below the cautious rate", () => {
    const budget = new SliceBudget();
    let t = 0;
    let instret = 0;
    // 10 cycles of a 100k-instruction slice (the clock does not move) and a 10 ms yield.
    for (let i = 0; i < 10; i++) {
      budget.next(instret, t, 10);
      instret += 100_000;
      budget.ran(instret, t);
      t += 10;
    }
    // 1 M in 100 ms is 10k a ms: below the cautious rate, so the estimate stays at 50k.
    expect(budget.next(instret, t, 10)).toBe(500_000);
  });

  it("does not count the time the guest was stopped", () => {
    const budget = new SliceBudget();
    budget.next(0, 0, 10);
    budget.ran(1_000_000, 10); // 100k a ms → 75k
    budget.restart();
    // A minute waiting, then running again at 100k a ms.
    expect(budget.next(1_000_000, 60_010, 10)).toBe(750_000);
    budget.ran(2_000_000, 60_020);
    expect(budget.next(2_000_000, 60_021, 10)).toBe(875_000);
  });
});
