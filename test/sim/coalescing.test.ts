/**
 * The pipelined tap coalesces over a slice: a guest that runs on when its
 * slice ends gets one more slice before its checkpoint is taken, so a busy
 * guest takes half as many (src/protocol/event-tap.ts). The bound is the
 * point: an event waits at most a slice longer, and a guest that stops —
 * paused here — has its checkpoint at once. The mutation `coalesceUnbounded`
 * holds the events for as long as the guest runs on: its output then leaves
 * only when the guest halts.
 */
import { describe, expect, it } from "vitest";
import { withMutation } from "../../src/protocol/mutations.ts";
import { simulate, type Scenario } from "../../src/sim/simulate.ts";
import type { EventTap } from "../../src/protocol/event-tap.ts";
import { CONSOLE_START } from "../helpers/guests.ts";

/** Computes (2 M instructions), prints a line, computes on (20 M more, rewriting a page), and halts. */
const BUSY = `
${CONSOLE_START}    li   s1, 1000000
2:  addi s1, s1, -1
    bnez s1, 2b
    la   t3, ring
    lw   t0, 0(t3)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, t3
    sw   t0, 0x40(t1)
    sw   zero, 0x44(t1)
    la   t2, line
    sw   t2, 0x48(t1)
    li   t2, 5
    sw   t2, 0x4c(t1)
    addi t0, t0, 1
    sw   t0, 0(t3)
    li   a0, CONSOLE_PORT
    li   a7, 1
    ecall
    li   s1, 5000000
1:  addi s1, s1, -1
    la   t0, scratch
    sw   s1, 0(t0)
    bnez s1, 1b
    li   a0, 7
    li   a7, 0
    ecall
.data
line: .ascii "done\\n"
.align 12
ring: .space 4096
scratch: .space 4096
`;

const PRINTED_AT = 2_000_000;
const KEMARI = { mode: "kemari" as const, kemari: { syncOn: "outputs" as const, pipeline: true }, guest: "hello" as const, source: BUSY, latency: "none" as const, faultMs: 4000, calmMs: 1000, reader: false };

/** Where the guest was (instructions, state) when its line first reached the console backend. */
async function firstOutput(scenario?: (s: Scenario) => Promise<boolean>) {
  const first: { seen: { instructions: number; state: string } | null } = { seen: null };
  const r = await simulate(1, {
    ...KEMARI,
    script: async (s) => {
      const { status, wait } = s;
      for (let t = 0; t < 3900 && !first.seen; t += 1) {
        if (scenario && (await scenario(s))) return;
        const st = await status();
        if (st && st.counters.consoleBytes > 0) first.seen = { instructions: st.instructions, state: st.state };
        await wait(1);
      }
    },
  });
  return { ...r, seen: first.seen };
}

/** The primary's tap, when it holds an event for its next slice's checkpoint (none in flight). */
function heldForNextSlice(s: Scenario): { tap: EventTap; pause: () => Promise<unknown> } | null {
  for (const h of s.world.hosts.values()) {
    const host = h.instance;
    if (host?.role.kind !== "primary") continue;
    const tap = host.role.primary.eventTap;
    if (tap && tap.pending > 0 && !tap.flight) return { tap, pause: () => host.pause() };
  }
  return null;
}

describe("the pipelined tap coalesces over one slice, no more", () => {
  it("a busy guest's line is out a slice or two after it printed it, while it runs on", async () => {
    const r = await firstOutput();
    expect(r.violations, r.trace.slice(-20).join("\n")).toEqual([]);
    expect(r.seen?.state).toBe("running");
    expect(r.seen!.instructions).toBeGreaterThan(PRINTED_AT);
    expect(r.seen!.instructions).toBeLessThan(PRINTED_AT + 1_000_000);
  });

  it("paused while an event waits for the next slice's checkpoint, the guest has it taken at once", async () => {
    let paused = false;
    const r = await firstOutput(async (s) => {
      if (paused) return false;
      const held = heldForNextSlice(s);
      if (!held) return false;
      await held.pause();
      paused = true;
      // No resume: the line must reach its backend all the same.
      return !(await s.until(() => held.tap.pending === 0, 500));
    });
    expect(paused).toBe(true);
    expect(r.violations, r.trace.slice(-20).join("\n")).toEqual([]);
    expect(r.seen?.state).toBe("paused");
  });

  it("with the events held for as long as the guest runs on (coalesceUnbounded), the line leaves only at its end", async () => {
    const r = await withMutation("coalesceUnbounded", () => firstOutput());
    expect(r.seen).not.toBeNull();
    expect(r.seen!.instructions).toBeGreaterThan(PRINTED_AT + 10_000_000);
  });
});
