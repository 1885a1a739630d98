/**
 * Kemari under failure: the design's invariants as tests. Each faulty run is
 * compared with the same guest's failure-free run: what the outside world saw
 * (console, packets, with repeats of an identity dropped by the switch), the
 * disk, and how the guest ended must be identical.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import journal from "../guests/journal.s?raw";
import hello from "../guests/hello.s?raw";
import stress from "../guests/stress.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import { call, createGuest, fault, observe, resume, status, waitFor, type FaultBody, type Observed } from "./helpers/api.ts";

/** Fast failure detection for tests: ping every 20 ms, fail over after 300 ms of silence. */
const FAST = { heartbeat: { intervalMs: 20, timeoutMs: 300 } };
const STEPS = ["before-transfer", "mid-transfer", "after-ack", "after-release"] as const;
const DONE = (s: GuestStatus) => s.state === "halted" || s.state === "crashed";

function tune(source: string, values: Record<string, number>): string {
  let s = source;
  for (const [k, v] of Object.entries(values)) s = s.replace(new RegExp(`^\\.equ ${k}, \\d+`, "m"), `.equ ${k}, ${v}`);
  return s;
}

const GUESTS: Record<string, string> = {
  hello,
  journal,
  stress: tune(stress, { PAGES: 4, ROUNDS: 30, REGION: 16 }),
};

/** Run a guest to its end, with `faults` injected before it starts; return what was seen. */
async function run(source: string, faults: FaultBody[] = [], extra: Record<string, unknown> = {}): Promise<{ seen: Observed; final: GuestStatus }> {
  const g = await createGuest({ asm: source }, { ...FAST, paused: true, ...extra });
  for (const f of faults) await fault(g.id, f);
  await resume(g.id);
  const final = await waitFor(g.id, (s) => DONE(s) && s.protection !== "failing-over", 20_000);
  return { seen: await observe(g.id), final };
}

const baseline: Record<string, Observed> = {};

beforeAll(async () => {
  for (const [name, source] of Object.entries(GUESTS)) baseline[name] = (await run(source)).seen;
});

describe("a protected guest", () => {
  it("synchronises at every event and ends as it would unprotected", async () => {
    const { seen, final } = await run(journal);
    expect(seen).toMatchObject({ state: "halted", exitCode: (40 * 41) / 2 });
    expect(seen.console).toBe("bcdefghijklmnopqrstuvwxyzabcdefghijklmno\nok\n");
    expect(final.protection).toBe("protected");
    expect(final.generation).toBe(0);
    // 40 rounds × 3 events, plus the final print, plus the full checkpoint at start.
    expect(final.sync!.syncs).toBeGreaterThanOrEqual(121);
    const unprotected = await run(journal, [], { mode: "none" });
    expect(unprotected.seen).toEqual(seen);
  });
});

describe.each(Object.keys(GUESTS))("crash matrix: %s", (name) => {
  it.each(STEPS)("primary crash at %s: the secondary takes over, nothing lost or repeated", async (at) => {
    const { seen, final } = await run(GUESTS[name], [{ target: "primary", kind: "crash", at }]);
    expect(seen).toEqual(baseline[name]);
    expect(final.generation).toBe(1);
    expect(final.failovers).toHaveLength(1);
  });

  it.each(STEPS)("secondary crash at %s: the primary goes on, the outcome is the same", async (at) => {
    const { seen, final } = await run(GUESTS[name], [{ target: "secondary", kind: "crash", at }]);
    expect(seen).toEqual(baseline[name]);
    expect(final.generation).toBe(0);
  });
});
