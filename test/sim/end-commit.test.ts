/**
 * A guest's end is seen outside: status shows `halted` and the exit code. So
 * it waits for an acknowledged checkpoint that holds it, as an output does —
 * else a failover could take it back (a nondeterministic guest could end
 * differently), and the acknowledged disk a client then reads could lack the
 * last writes (seen in CI: `kemari check` on workload.s read a halted guest's
 * disk without its last record, the write having followed the last output's
 * checkpoint). The simulator's checker holds every status a client reads to
 * this (`end commit`); the mutation `endBeforeAck` shows the end at once.
 */
import { describe, expect, it } from "vitest";
import { withMutation } from "../../src/protocol/mutations.ts";
import { simulate, type SimOptions } from "../../src/sim/simulate.ts";
import { CONSOLE_START } from "../helpers/guests.ts";

/** Prints one line, then computes (dirtying a page) for a while after it, and halts with exit code 7. */
const LATE_END = `
${CONSOLE_START}    la   t3, ring
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
    li   s1, 400000
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

const CASES: [string, SimOptions][] = [
  ["kemari, pipelined", { mode: "kemari", kemari: { syncOn: "outputs", pipeline: true } }],
  ["kemari, stop-and-wait", { mode: "kemari", kemari: { syncOn: "outputs", pipeline: false } }],
  ["remus", { mode: "remus" }],
];

/** Poll the status as a client would until it shows the end; what the checker found. */
async function run(opts: SimOptions) {
  let shown: string | null = null;
  const r = await simulate(1, {
    ...opts, guest: "hello", source: LATE_END, latency: { rttMs: 120 }, faultMs: 4000, calmMs: 1000, reader: false,
    script: async ({ status, wait }) => {
      for (let t = 0; t < 3900 && !shown; t += 5) {
        const s = await status();
        if (s && (s.state === "halted" || s.state === "crashed")) shown = `${s.state} ${s.exitCode}`;
        await wait(5);
      }
    },
  });
  return { ...r, shown };
}

describe.each(CASES)("a guest's end waits for its checkpoint (%s)", (_, opts) => {
  it("status shows halted, exit 7, only once an acknowledged checkpoint holds it", async () => {
    const r = await run(opts);
    expect(r.shown).toBe("halted 7");
    expect(r.violations, r.trace.slice(-30).join("\n")).toEqual([]);
  });

  it("with the end shown at once (endBeforeAck), the checker reports it", async () => {
    const r = await withMutation("endBeforeAck", () => run(opts));
    expect(r.shown).toBe("halted 7");
    expect(r.violations.some((v) => /^end commit: status showed the guest halted \(exit 7\)/.test(v)), r.violations.join("; ")).toBe(true);
  });
});
