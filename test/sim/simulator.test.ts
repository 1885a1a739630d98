/**
 * The protocol under the deterministic simulator (src/sim): the real code of
 * src/protocol/, seeded faults, every invariant checked on every run.
 */
import { describe, expect, it } from "vitest";
import { withMutation, type MutationName } from "../../src/protocol/mutations.ts";
import { simulate } from "../../src/sim/simulate.ts";

/** The seed budget `npm test` spends on clean runs (≥ 500), in chunks that report separately. */
const SEEDS = 600;
const CHUNK = 100;

describe("the simulator", () => {
  for (let from = 1; from <= SEEDS; from += CHUNK) {
    it(`seeds ${from}..${from + CHUNK - 1}: every invariant holds under faults`, async () => {
      const failures: string[] = [];
      let faults = 0;
      for (let seed = from; seed < from + CHUNK; seed++) {
        const r = await simulate(seed);
        faults += r.stats.faults;
        if (r.violations.length > 0) failures.push(`seed ${seed} (${r.guest}, ${r.mode}): ${r.violations.join("; ")} — replay: npm run sim -- --seed ${seed} --trace`);
      }
      expect(failures).toEqual([]);
      // The runs did inject faults (a simulator that breaks nothing checks nothing).
      expect(faults).toBeGreaterThan(CHUNK);
    });
  }

  it("is deterministic: one seed, one exact run", async () => {
    const a = await simulate(4242);
    const b = await simulate(4242);
    expect(a.trace.length).toBeGreaterThan(100);
    expect(b.trace).toEqual(a.trace);
  });
});

/**
 * Each test switches one known bug back on and shows that the simulator
 * reports the invariant it violates within the default seed budget.
 */
describe("the simulator's mutation tests: each bug switched back on is caught", () => {
  const cases: [MutationName, string, RegExp][] = [
    ["mirrorDiskAhead", "bug 1: a disk write mirrored ahead of its checkpoint (a re-run batch reads its own later write)", /^transparency/],
    ["fullWithoutHeldOutputs", "bug 2: a Remus full checkpoint without the epoch's held outputs", /^output commit: checkpoint/],
    ["diskReadsLive", "bug 3: disk reads showing writes no checkpoint holds yet", /^disk reads/],
    ["releaseBeforeAck", "an output released before its ack", /^output commit/],
    ["acceptOlderGeneration", "a checkpoint of an older generation accepted", /^transparency/],
    ["pipelineUnbounded", "pipelined tap: a backend consumes requests its checkpoint does not hold", /^output commit: console#\d+ released/],
    ["outputsNotCarried", "outputs on their way to the witness left out of checkpoints", /^output commit: checkpoint .* neither the outside world nor the checkpoint holds/],
    ["keepBasesOfFailed", "a failed pipelined checkpoint's pages kept as the next one's delta bases", /^(output commit|transparency|atomicity)/],
    ["deltaBaseAtAck", "Remus's epochs in flight: the next checkpoint's deltas against pages the secondary will no longer hold", /^(output commit|transparency|atomicity)/],
    ["endBeforeAck", "a guest's end (halted, its exit code) shown before an acknowledged checkpoint holds it", /^end commit/],
    ["keepNothing", "copy-on-write capture: a page a checkpoint in flight still reads live is changed without keeping it", /^(atomicity|uncaught: InvariantError: checkpoint \d+: page \d+ changed)/],
  ];
  for (const [name, what, expected] of cases) {
    it(`${what} (${name})`, async () => {
      const found = await withMutation(name, async () => {
        for (let seed = 1; seed <= SEEDS; seed++) {
          const r = await simulate(seed);
          const hit = r.violations.find((v) => expected.test(v));
          if (hit) return { seed, hit };
        }
        return null;
      });
      expect(found, `no seed in 1..${SEEDS} caught ${name}`).not.toBeNull();
    });
  }

  it("with every mutation off, the seeds that caught them pass", async () => {
    for (const seed of [6, 7, 9, 24, 52, 177, 290]) expect((await simulate(seed)).violations).toEqual([]);
  });
});

describe("fencing: a fenced primary sends no checkpoint", () => {
  // Seed 14581 (found by the long run of 2026-12-01): the witness decides a takeover while the
  // secondary is cut off from it, so the promote keeps failing; the old primary, fenced by the
  // switch's refusal, still sent a checkpoint to that secondary (same generation), moving the copy
  // the takeover then started from to a state no primary had captured. Since running primaries'
  // check-ins carry their liveness (2026-12-02) the timing differs and seed 19147 shows it, found
  // with `npm run sim -- --mutation fencedPrimarySends` (1 in ~2,000 seeds); since check-ins no longer
  // hold the guest and frames go out in a window (2026-12-02), seed 3439.
  it("seed 3439 passes; with the bug switched back on (fencedPrimarySends) it breaks atomicity", async () => {
    expect((await simulate(3439)).violations).toEqual([]);
    const r = await withMutation("fencedPrimarySends", () => simulate(3439));
    expect(r.violations.some((v) => /^atomicity/.test(v)), r.violations.join("; ")).toBe(true);
  });
});

describe("a checkpoint's frames in a window: the first goes alone", () => {
  // Seeds 1771, 4289 and 4635 (of 1..6000) found it when frames first went out in a window: a link
  // reordered two frames of a checkpoint, the second was refused and the first staged; the retry under
  // the same seq was reordered too, and its second frame joined the first attempt's staged first one,
  // committing a copy no primary captured. The first frame now waits for its acknowledgement (about
  // 1 seed in 2,000 shows the bug: `npm run sim -- --mutation windowFromFirstFrame`).
  it("seed 4289 passes; with the first frame in the window (windowFromFirstFrame) it breaks atomicity", async () => {
    expect((await simulate(4289)).violations).toEqual([]);
    const r = await withMutation("windowFromFirstFrame", () => simulate(4289));
    expect(r.violations.some((v) => /^atomicity/.test(v)), r.violations.join("; ")).toBe(true);
  });
});

describe("the checker's end of run", () => {
  it("counts outputs only once the primary has settled (a counter reply still on its way at the end of the calm)", async () => {
    // Seed 40493 found this (a reply crossing a 197 ms link as the calm ended). Since check-ins no
    // longer hold the guest (2026-12-02) no drawn run of 1..4,000 or 40,000..50,000 goes past its calm,
    // so the case is set up: stop-and-wait at every event over a 197 ms link, where seed 53 does.
    const r = await simulate(53, { mode: "kemari", guest: "counter", kemari: { syncOn: "every-event", pipeline: false }, latency: { rttMs: 197 } });
    expect(r.violations).toEqual([]);
    expect(r.stats.settleMs).toBeGreaterThan(0);
    expect(r.trace.some((l) => l.includes("has not settled"))).toBe(false);
    expect((await simulate(40493)).violations).toEqual([]);
  });
});
