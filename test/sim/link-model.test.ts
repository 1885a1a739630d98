/**
 * The link model (src/protocol/link-model.ts) on a virtual clock: half the
 * round trip each way, a FIFO per direction, bytes / bandwidth on the wire.
 */
import { describe, expect, it } from "vitest";
import { Lane, Link, linkSpec, messageBytes, overLink, regionRttMs } from "../../src/protocol/link-model.ts";
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
