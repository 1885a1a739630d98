/**
 * Warming the interpreter's type feedback before a guest runs.
 *
 * V8 optimises `Cpu.run` from the feedback its first executions leave: which
 * cases of the dispatch ran, and whether their values were small integers.
 * A case that first runs after the loop is optimised — a guest computing in
 * registers for seconds, then its first `lw` — has no feedback, and V8 throws
 * the optimised loop away ("insufficient type feedback"). Inside workerd that
 * sometimes went on for good: traced with V8's --trace-deopt
 * (MINIFLARE_WORKERD_V8_FLAGS), the loop fell back to on-stack code compiled
 * for its inner loop, which deoptimised at every exit from it, and a
 * compute-bound guest ran at 9 M instructions/s instead of 130-180.
 *
 * So once per isolate, before the first guest's machine exists, a small
 * program runs on a memory of its own: every instruction the interpreter
 * dispatches, with values beyond the small-integer range, every way out of a
 * block (a store that calls out, a misaligned access, a counter read, a
 * budget that ends mid-block, each fault), so that the optimised loop has
 * seen everything a guest can do. It touches no guest: its memory and hart
 * are dropped afterwards.
 *
 * It also takes that memory through a checkpoint's bookkeeping (the dirty
 * set cleared, pages held, a store handing its page over, copies let go,
 * braking on and off). The optimised loop inlines the store's slow path, and
 * V8 lets it rely on a field that nothing has written since construction
 * staying as it is; the first write to one — `braking`, when the first
 * checkpoint in flight let go of its pages — threw the optimised loop away,
 * and traced inside workerd (--trace-deopt --trace-generalization) it then
 * never got back to optimised code: every slice began by deoptimising for
 * on-stack replacement (13,381 times in one 10 s run), and a compute-bound
 * guest ran at a third of its speed in every mode after the first Remus
 * guest's first epoch.
 */
import { BRANCHES, CSR, enc, I_ARITH, LOADS, R_TYPE, SHIFT_IMM, STORES } from "../image/encode.ts";
import { Cpu, Exit } from "./cpu.ts";
import { Memory, MIN_PAGES, PAGE_SIZE, type PageKeeper } from "./memory.ts";

/** Registers: a large positive and a large negative value, a data page, a counter, scratch. */
const BIG = 5, NEG = 6, DATA = 7, COUNT = 8, T = 10;
const DATA_PAGE = 1;
// Every mnemonic of each kind, from the encoder's own tables: a new one cannot be left out here.
const REG_REG = Object.keys(R_TYPE) as (keyof typeof R_TYPE)[];
const REG_IMM = Object.keys(I_ARITH) as (keyof typeof I_ARITH)[];
const SHIFTS = Object.keys(SHIFT_IMM) as (keyof typeof SHIFT_IMM)[];
const STORE_OPS = Object.keys(STORES) as (keyof typeof STORES)[];
const LOAD_OPS = Object.keys(LOADS) as (keyof typeof LOADS)[];
const BRANCH_OPS = Object.keys(BRANCHES) as (keyof typeof BRANCHES)[];
const COUNTERS = Object.values(CSR);

/** Straight-line code through every op the loop dispatches, loops for its fused pairs, then ecall. */
export function warmUpProgram(): number[] {
  const p: number[] = [
    enc.lui(BIG, 0x7ffff), enc.addi(BIG, BIG, 0x7ff), // 0x7ffff7ff: past the small-integer range
    enc.lui(NEG, 0x80000), enc.addi(NEG, NEG, 1),
    enc.lui(DATA, DATA_PAGE), enc.auipc(T, 0),
    enc.addi(COUNT, 0, 3),
  ];
  // Each register-register op both ways round and with x0; division by zero and overflow.
  for (const op of REG_REG) p.push(enc[op](T, BIG, NEG), enc[op](T + 1, NEG, BIG), enc[op](T + 2, BIG, 0));
  p.push(enc.addi(T + 3, 0, -1), enc.div(T, NEG, T + 3), enc.rem(T, NEG, T + 3));
  for (const op of REG_IMM) p.push(enc[op](T, BIG, -5), enc[op](T + 1, NEG, 1000));
  for (const op of SHIFTS) p.push(enc[op](T, BIG, 3), enc[op](T + 1, NEG, 7));
  // Stores: to a clean page (calls out), to it dirty, misaligned; then data beside decoded code.
  for (const op of STORE_OPS) p.push(enc[op](NEG, DATA, 0), enc[op](BIG, DATA, 8), enc[op](BIG, DATA, 1));
  p.push(enc.sw(BIG, 0, 0x7f0)); // a word of page 0 past the program
  for (const op of LOAD_OPS) p.push(enc[op](T, DATA, 0), enc[op](T + 1, DATA, 1), enc[op](T + 2, DATA, 8));
  for (const c of COUNTERS) p.push(enc.csrrs(T, c));
  p.push(enc.fence());
  // Every branch taken (over the next slot) and not taken.
  for (const op of BRANCH_OPS) p.push(enc[op](NEG, BIG, 8), enc.addi(T, T, 1), enc[op](BIG, NEG, 8), enc.addi(T, T, 1));
  // A counted loop (addi + bne, fused), addi + beq, slli + add, jal, and jalr to the ecall.
  p.push(enc.addi(COUNT, COUNT, -1), enc.bne(COUNT, 0, -4));
  p.push(enc.addi(T, T, 1), enc.beq(T, BIG, 8), enc.addi(T, T, 1));
  p.push(enc.slli(T, BIG, 2), enc.add(T, T, DATA));
  p.push(enc.jal(1, 8), enc.addi(0, 0, 0));
  const ecallAt = (p.length + 2) * 4;
  p.push(enc.addi(T, 0, ecallAt), enc.jalr(1, T, 0), enc.ecall());
  return p;
}

/** Programs that stop otherwise: ebreak, and each fault the loop raises. */
export const WARM_UP_ENDINGS: readonly number[][] = [
  [enc.ebreak()],
  [0xffffffff], // illegal
  [enc.lui(T, 0x7ffff), enc.lw(T, T, 0)], // load outside memory
  [enc.lui(T, 0x7ffff), enc.sw(T, T, 0)], // store outside memory
  [enc.addi(T, 0, 2), enc.jalr(1, T, 0)], // misaligned jump target
  [enc.jal(0, 2)], // misaligned jal
  [enc.beq(0, 0, 6)], // misaligned branch, taken
];

let warmed = false;

/** Run the warm-up once per isolate (a few milliseconds); later calls do nothing. */
export function warmUpInterpreter(): void {
  if (warmed) return;
  warmed = true;
  const code = warmUpProgram();
  for (let round = 0; round < 8; round++) {
    const mem = new Memory(MIN_PAGES);
    const cpu = new Cpu(mem, { now: () => 0x7fffffff });
    load(mem, code);
    // Whole runs, and runs cut into pieces that end inside blocks.
    for (let rep = 0; rep < 4; rep++) {
      cpu.reset(0, 0x8000);
      const piece = rep === 0 ? 1_000_000 : 1 + ((round + rep) % 7);
      while (cpu.run(piece) === Exit.BUDGET);
    }
    for (const ending of WARM_UP_ENDINGS) {
      load(mem, ending);
      cpu.reset(0, 0x8000);
      cpu.run(100);
    }
  }
  checkpointBookkeeping(code);
}

/**
 * What a checkpoint does to memory, on a memory of its own whose keep limit
 * is one page: take the dirty set and clear it, hold its pages, let a store
 * hand one over (braking: the limit is reached), let go (braking off), put
 * pages back, take the unsaved list.
 */
export function checkpointBookkeeping(code: number[]): { braked: number; keptAfter: number; brakingAfter: boolean } {
  const limit = Memory.keepLimitBytes;
  Memory.keepLimitBytes = PAGE_SIZE;
  try {
    const mem = new Memory(MIN_PAGES);
    const cpu = new Cpu(mem, { now: () => 0 });
    const keeper: PageKeeper = { keep: () => undefined };
    load(mem, code);
    let braked = 0;
    for (let round = 0; round < 2; round++) {
      cpu.reset(0, 0x8000);
      while (cpu.run(1_000_000) === Exit.BUDGET);
      const pages = mem.dirtyPages().slice();
      mem.clearDirty();
      mem.hold(keeper, pages);
      cpu.reset(0, 0x8000);
      cpu.run(1_000_000); // its stores hand the held pages over, and memory brakes
      if (mem.braking) braked++;
      mem.letGo(keeper, pages, mem.keptBytes);
      mem.markDirty(pages);
      mem.takeUnsaved();
    }
    return { braked, keptAfter: mem.keptBytes, brakingAfter: mem.braking };
  } finally {
    Memory.keepLimitBytes = limit;
  }
}

function load(mem: Memory, words: number[]): void {
  const bytes = new Uint8Array(new Int32Array(words).buffer);
  mem.write(0, bytes);
}
