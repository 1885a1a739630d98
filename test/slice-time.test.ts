/**
 * A slice stops delivering events once it has used its time (src/host/runner.ts):
 * with a tap that waits for each synchronisation (stop-and-wait), an 80 ms
 * round trip per event held the guest — and every request for it — for
 * 16 round trips.
 */
import { describe, expect, it } from "vitest";
import { GuestRunner, EVENTS_PER_SLICE } from "../src/host/runner.ts";
import { SLICE_MS } from "../src/host/slice-budget.ts";
import { assemble } from "../src/image/assembler.ts";
import type { Disk } from "../src/devices/backend.ts";
import NOTIFY_LOOP from "./helpers/notify-loop.s?raw";

const disk: Disk = { sectors: 8, read: (_s, n) => new Uint8Array(n * 512), write: async () => {} };

/** A runner on a clock of our own; each tapped event costs `tapMs` of it. */
function rig(tapMs: number) {
  let t = 0;
  const runner = new GuestRunner(16, disk, async () => {}, { now: () => t, random32: () => 4 });
  runner.load(assemble(NOTIFY_LOOP));
  runner.tap = async () => {
    t += tapMs;
  };
  return { runner, elapsed: () => t };
}

describe("a slice's time budget", () => {
  it.each([
    [0, EVENTS_PER_SLICE],
    [1, SLICE_MS],
    [80, 1],
  ])("events whose taps take %i ms each: %i in a slice", async (tapMs, events) => {
    const { runner } = rig(tapMs);
    await runner.runSlice(1_000_000);
    expect(runner.counters.events).toBe(events);
  });

  it("a step request is bounded the same way", async () => {
    const { runner, elapsed } = rig(80);
    runner.machine.pause();
    const executed = await runner.step(1_000_000);
    expect(runner.counters.events).toBe(1);
    expect(elapsed()).toBe(80);
    expect(executed).toBeLessThan(20);
    expect(runner.state).toBe("paused");
  });
});
