/**
 * The interpreter's warm-up (src/guest/warm-up.ts) must reach every op the
 * loop dispatches, or the op it misses is the one whose first run after
 * optimisation throws the optimised loop away.
 */
import { describe, expect, it } from "vitest";
import { Cpu, Exit, Op } from "../src/guest/cpu.ts";
import { Memory, MIN_PAGES } from "../src/guest/memory.ts";
import { checkpointBookkeeping, WARM_UP_ENDINGS, warmUpInterpreter, warmUpProgram } from "../src/guest/warm-up.ts";

/** Run `words` from address 0; the ops left in page 0's decoded cache, and how the run ended. */
function runAndCollect(words: number[]): { exit: Exit; ops: Set<number>; cpu: Cpu } {
  const mem = new Memory(MIN_PAGES);
  mem.write(0, new Uint8Array(new Int32Array(words).buffer));
  const cpu = new Cpu(mem, { now: () => 0 });
  cpu.reset(0, 0x8000);
  const exit = cpu.run(100_000);
  const cache = mem.codePage(0);
  const ops = new Set<number>();
  for (let slot = 0; slot < words.length; slot++) if (cache[slot << 1] !== 0) ops.add(cache[slot << 1] & 255);
  return { exit, ops, cpu };
}

describe("interpreter warm-up", () => {
  it("runs its program to the ecall, and each ending stops as it says", () => {
    const main = runAndCollect(warmUpProgram());
    expect(main.cpu.fault).toBeNull();
    expect(main.exit).toBe(Exit.ECALL);
    expect(main.cpu.pc).toBe((warmUpProgram().length - 1) * 4);
    const endings = WARM_UP_ENDINGS.map((w) => runAndCollect(w).exit);
    expect(endings).toEqual([Exit.EBREAK, ...Array(WARM_UP_ENDINGS.length - 1).fill(Exit.FAULT)]);
  });

  it("dispatches every op the loop has (a new op needs a line in the warm-up)", () => {
    const seen = new Set<number>(runAndCollect(warmUpProgram()).ops);
    for (const w of WARM_UP_ENDINGS) for (const op of runAndCollect(w).ops) seen.add(op);
    const missing: number[] = [];
    for (let op = Op.UNDECODED + 1; op <= Op.SLLI_ADD; op++) if (!seen.has(op)) missing.push(op);
    expect(missing).toEqual([]);
  });

  it("writes the fields a checkpoint writes: memory brakes while pages are held, and lets go (the keep limit is left as it was)", () => {
    const limit = Memory.keepLimitBytes;
    expect(checkpointBookkeeping(warmUpProgram())).toEqual({ braked: 2, keptAfter: 0, brakingAfter: false });
    expect(Memory.keepLimitBytes).toBe(limit);
  });

  it("is cheap and runs once", () => {
    const t0 = performance.now();
    warmUpInterpreter();
    warmUpInterpreter();
    expect(performance.now() - t0).toBeLessThan(500);
  });
});
