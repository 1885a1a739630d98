/**
 * Interpreter benchmarks: guest instructions per second on a compute loop,
 * and the cost of log-dirty tracking against the same loop without it.
 * Run by scripts/bench.mjs, which bundles this file twice: once as is, and
 * once with the interpreter's dirty-tracking check removed (`variant`).
 */
import { assemble } from "../src/image/assembler.ts";
import { Machine } from "../src/guest/machine.ts";

/** A compute loop: arithmetic, a multiply, a divide, a load and a store per round. */
export const COMPUTE_LOOP = `
_start:
    li   t3, 0x4000           # a data page of its own
    li   t0, 0
    li   t5, 7
loop:
    addi t0, t0, 1
    add  t1, t1, t0
    xor  t2, t2, t1
    mul  t4, t2, t0
    srli t4, t4, 3
    divu t6, t4, t5
    sw   t6, 0(t3)
    lw   t6, 4(t3)
    andi t6, t0, 0x3ff
    slli t6, t6, 2
    add  t6, t6, t3
    sw   t1, 0(t6)            # walks a 4 KiB window
    bnez t5, loop
`;

export interface InterpreterFigures {
  mips: number;
  instructions: number;
  seconds: number;
}

export function measure(source: string, seconds: number, clearEvery = 0): InterpreterFigures {
  const m = new Machine(256);
  m.load(assemble(source));
  const slice = 1_000_000;
  // Warm up so the figure is the optimised loop, not the JIT's first tiers.
  for (let i = 0; i < 50; i++) m.run(slice);
  const start = performance.now();
  let n = 0;
  let slices = 0;
  while (performance.now() - start < seconds * 1000) {
    m.run(slice);
    n += slice;
    if (clearEvery && ++slices % clearEvery === 0) m.memory.clearDirty();
  }
  const dt = (performance.now() - start) / 1000;
  if (m.state !== "running") throw new Error(`benchmark guest stopped: ${m.state} ${JSON.stringify(m.crash)}`);
  return { mips: n / dt / 1e6, instructions: n, seconds: dt };
}

/** Reading and clearing the dirty set: microseconds per sync for `pages` dirty pages of a 64 MiB guest. */
export function dirtySetCost(pages: number, rounds = 2000): number {
  const m = new Machine(16384);
  const stride = Math.floor(16384 / pages);
  const start = performance.now();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < pages; i++) m.memory.touch(i * stride * 4096, 4);
    const dirty = m.memory.dirtyPages();
    if (dirty.length !== pages) throw new Error("dirty set lost a page");
    m.memory.clearDirty();
  }
  return ((performance.now() - start) * 1000) / rounds;
}

