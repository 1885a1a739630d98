/**
 * The interpreter's block dispatch (src/guest/cpu.ts): it runs a basic block's
 * instructions back to back, fuses common pairs, and must still count every
 * instruction exactly, stop exactly where a budget ends, fault exactly at the
 * faulting instruction and see code the guest rewrites — inside the block it
 * is running, too. The property test runs random programs (loops, fused
 * pairs, counter reads, misaligned accesses, code that rewrites itself) once
 * in one go, in small random pieces (every piece boundary cuts a block) and
 * one instruction at a time decoded afresh at every step (no decoded code
 * reused: the reference), and the three must agree on everything.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Machine, type MachineEnv } from "../src/guest/machine.ts";
import { CSR, NOP, enc } from "../src/image/encode.ts";

const PAGES = 16;
const DATA = 0x2000;
const env: MachineEnv = { now: () => 0, random32: () => 0x5eed };
const le = (...ws: number[]): Uint8Array => new Uint8Array(new Uint32Array(ws.map((w) => w >>> 0)).buffer);

function boot(code: number[], data: number[] = [], regs: Record<number, number> = {}, entry = 0): Machine {
  const m = new Machine(PAGES, env);
  m.load({ segments: [{ addr: entry, data: le(...code), size: code.length * 4 }], entry, symbols: {} });
  if (data.length) m.memory.write(DATA, le(...data));
  for (const [r, v] of Object.entries(regs)) m.cpu.regs[Number(r)] = v;
  return m;
}

/** Run until `total` instructions have retired, `piece` at a time (or the guest stops). */
function runIn(m: Machine, total: number, piece: (i: number) => number): void {
  for (let i = 0; m.state === "running" && m.cpu.instret < total; i++) m.run(Math.min(piece(i), total - m.cpu.instret));
}

const A0 = 10; // a0..a5: x10..x15
const S0 = 8; // the data page's address
const S1 = 9; // the code's address (0)
const T6 = 31; // the word a rewrite copies (no generated instruction writes it; a nop until the first copy)

describe("block dispatch", () => {
  it("a store into the block being run rewrites a later instruction of it, which then runs anew", () => {
    // loop: a1 += 1; store a2 over slot 3; a3 = a3 + 1 (rewritten to a3 = a3 + 100); a4 -= 1; bnez a4, loop
    const rewritten = enc.addi("a3", "a3", 100);
    const m = boot(
      [enc.addi("a1", "a1", 1), enc.sw("a2", "s1", 12), NOP, enc.addi("a3", "a3", 1), enc.addi("a4", "a4", -1), enc.bne("a4", "zero", -20), enc.ebreak()],
      [],
      { 12: enc.addi("a3", "a3", 1), 14: 3, [S1]: 0 },
    );
    m.run(100); // three rounds (the store puts back the same instruction), then the ebreak
    expect(m.state).toBe("breakpoint");
    expect(m.cpu.regs[13]).toBe(3);
    m.cpu.regs[12] = rewritten;
    m.cpu.regs[14] = 2;
    m.cpu.pc = 0;
    m.state = "running";
    m.run(100);
    expect(m.state).toBe("breakpoint");
    expect(m.cpu.regs[13]).toBe(3 + 200);
  });

  it("a block on one page that rewrites decoded code on another (dirty) page makes the new instruction run", () => {
    // Page 0, slot 5: a0 += 1, then off to page 1, which writes a2 (a0 += 100) over that slot and comes back, three times.
    const m = new Machine(PAGES, env);
    const page0 = [enc.jal(0, 20), NOP, NOP, NOP, NOP, enc.addi("a0", "a0", 1), enc.jal(0, 0x1000 - 0x18)];
    const page1 = [enc.sw("a2", "zero", 0x14), enc.addi("a4", "a4", -1), enc.beq("a4", "zero", 8), enc.jal(0, 0x14 - 0x100c), enc.ebreak()];
    m.load({ segments: [{ addr: 0, data: le(...page0), size: page0.length * 4 }, { addr: 0x1000, data: le(...page1), size: page1.length * 4 }], entry: 0, symbols: {} });
    m.cpu.regs[12] = enc.addi("a0", "a0", 100);
    m.cpu.regs[14] = 3;
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect(m.cpu.regs[A0]).toBe(1 + 100 + 100);
  });

  it("rewriting the branch of a fused pair (addi; bnez) takes effect", () => {
    // loop: a0 -= 1; bnez a0, loop — then the bnez is rewritten into a1 += 7 and the loop runs again.
    const m = boot([enc.addi("a0", "a0", -1), enc.bne("a0", "zero", -4), enc.ebreak()], [], { [A0]: 5 });
    m.run(100);
    expect(m.state).toBe("breakpoint");
    expect(m.cpu.instret).toBe(5 * 2 + 1);
    m.memory.write(4, le(enc.addi("a1", "a1", 7)));
    m.cpu.regs[A0] = 5;
    m.cpu.pc = 0;
    m.state = "running";
    m.run(100);
    expect(m.state).toBe("breakpoint");
    expect([m.cpu.regs[A0], m.cpu.regs[A0 + 1], m.cpu.instret]).toEqual([4, 7, 11 + 3]);
  });

  it("a run that ends between a fused addi and its branch runs the addi alone", () => {
    const m = boot([enc.addi("a0", "a0", -1), enc.bne("a0", "zero", -4), enc.ebreak()], [], { [A0]: 2 });
    m.run(1);
    expect([m.cpu.instret, m.cpu.pc, m.cpu.regs[A0]]).toEqual([1, 4, 1]);
    m.run(1);
    expect([m.cpu.instret, m.cpu.pc]).toEqual([2, 0]);
    m.run(2);
    expect([m.cpu.instret, m.cpu.pc, m.cpu.regs[A0]]).toEqual([4, 8, 0]);
  });

  it("a fault inside a block counts only the instructions before it, at its pc", () => {
    const m = boot([enc.addi("a0", "a0", 1), enc.addi("a0", "a0", 1), enc.lw("a1", "zero", -4), enc.addi("a0", "a0", 1), enc.ebreak()]);
    m.run(100);
    expect(m.state).toBe("crashed");
    expect(m.crash?.pc).toBe(8);
    expect([m.cpu.instret, m.cpu.pc, m.cpu.regs[A0]]).toEqual([2, 8, 2]);
  });

  it("rdinstret in the middle of a block reads the count before it", () => {
    const m = boot([NOP, NOP, enc.csrrs("a0", CSR.instret), NOP, enc.csrrs("a1", CSR.instret), enc.ebreak()]);
    m.run(100);
    expect([m.cpu.regs[A0], m.cpu.regs[A0 + 1]]).toEqual([2, 4]);
  });

  it("a misaligned store in a block (the slow path) lands, and the block goes on", () => {
    const m = boot([enc.sw("a1", "s0", 1), enc.addi("a0", "a0", 1), enc.sh("a1", "s0", 9), enc.addi("a0", "a0", 1), enc.ebreak()], [], { [S0]: DATA, [A0 + 1]: 0x11223344 });
    m.memory.clearDirty();
    m.run(100);
    expect(m.state).toBe("breakpoint");
    expect([...m.memory.read(DATA, 12)]).toEqual([0, 0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, 0x44, 0x33, 0]);
    expect(m.cpu.regs[A0]).toBe(2);
    expect([...m.memory.dirtyPages()]).toEqual([DATA >> 12]);
  });

  it("a fractional budget is refused (it would never meet a block's end)", () => {
    const m = boot([enc.addi("a0", "a0", 1), enc.ebreak()]);
    expect(() => m.cpu.run(1.5)).toThrow(/whole number/);
  });

  it("memory adopted at an odd offset in its buffer is copied (the word views need it aligned) and runs", () => {
    const code = le(enc.addi("a0", "a0", 5), enc.sw("a0", "zero", 0x100), enc.lw("a1", "zero", 0x100), enc.ebreak());
    const buffer = new Uint8Array(PAGES * 4096 + 1);
    buffer.set(code, 1);
    const m = new Machine(PAGES, env, buffer.subarray(1));
    m.run(100);
    expect(m.state).toBe("breakpoint");
    expect([m.cpu.regs[A0], m.cpu.regs[A0 + 1]]).toEqual([5, 5]);
  });
});

// ───────────── random programs, whole against in pieces ─────────────

const reg = fc.integer({ min: A0, max: A0 + 5 });
/** Instruction templates; `at` is the instruction's index, `n` the program's length (branch targets stay inside). */
type Gen = fc.Arbitrary<(at: number, n: number) => number[]>;
const alu: Gen = fc.oneof(
  fc.tuple(reg, reg, fc.integer({ min: -2048, max: 2047 })).map(([d, s, i]) => () => [enc.addi(d, s, i)]),
  fc.tuple(fc.constantFrom("add", "sub", "xor", "mul", "divu", "remu", "sll", "sltu") as fc.Arbitrary<"add">, reg, reg, reg).map(([op, d, a, b]) => () => [enc[op](d, a, b)]),
  fc.tuple(reg, reg, fc.integer({ min: 0, max: 31 })).map(([d, s, i]) => () => [enc.slli(d, s, i)]),
);
const memory: Gen = fc.oneof(
  fc.tuple(reg, fc.integer({ min: 0, max: 252 })).map(([d, o]) => () => [enc.lw(d, S0, o)]),
  fc.tuple(reg, fc.integer({ min: 0, max: 252 })).map(([d, o]) => () => [enc.lh(d, S0, o)]),
  fc.tuple(reg, fc.integer({ min: 0, max: 255 })).map(([d, o]) => () => [enc.lbu(d, S0, o)]),
  fc.tuple(reg, fc.integer({ min: 0, max: 252 })).map(([s, o]) => () => [enc.sw(s, S0, o)]),
  fc.tuple(reg, fc.integer({ min: 0, max: 253 })).map(([s, o]) => () => [enc.sh(s, S0, o)]),
  fc.tuple(reg, fc.integer({ min: 0, max: 255 })).map(([s, o]) => () => [enc.sb(s, S0, o)]),
  reg.map((d) => () => [enc.csrrs(d, CSR.instret)]),
);
const control: Gen = fc.oneof(
  fc.tuple(fc.constantFrom("beq", "bne", "blt", "bltu") as fc.Arbitrary<"beq">, reg, reg, fc.nat()).map(([op, a, b, t]) => (at: number, n: number) => [enc[op](a, b, ((t % n) - at) * 4)]),
  // A counted loop's end: the fused pair.
  fc.tuple(reg, fc.nat()).map(([r, t]) => (at: number, n: number) => [enc.addi(r, r, -1), enc.bne(r, 0, ((t % n) - at - 1) * 4)]),
);
/** Copy word `w` of the data page (the pool: mostly ALU instructions, some branches, ecalls, illegal words) over instruction `slot`: code that rewrites itself. */
const rewrite: Gen = fc.tuple(fc.nat(15), fc.nat()).map(([w, slot]) => (_at: number, n: number) => [enc.lw(T6, S0, 256 + w * 4), enc.sw(T6, S1, (slot % n) * 4)]);

const program = fc
  .tuple(
    fc.array(fc.oneof({ weight: 4, arbitrary: alu }, { weight: 2, arbitrary: memory }, { weight: 2, arbitrary: control }, { weight: 1, arbitrary: rewrite }), { minLength: 1, maxLength: 40 }),
    fc.array(fc.oneof({ weight: 12, arbitrary: alu }, { weight: 1, arbitrary: fc.constantFrom(() => [enc.bne(A0, A0 + 1, 8)], () => [enc.beq(A0, A0, -8)], () => [enc.ecall()], () => [0]) }), { minLength: 16, maxLength: 16 }),
  )
  .map(([parts, pool]) => {
    // Lay out, then fill in branch offsets now that each part's index is known; the last instruction jumps back to the start.
    const sizes = parts.map((p) => p(0, 1).length);
    const n = sizes.reduce((a, b) => a + b, 0) + 1;
    const code: number[] = [];
    for (const p of parts) code.push(...p(code.length, n - 1));
    code.push(enc.jal(0, -code.length * 4));
    return { code, pool: pool.map((p) => p(0, 1)[0]) };
  });

describe("block dispatch against fresh decoding, in pieces", () => {
  it("random programs run the same in one go, in random pieces, and one freshly decoded instruction at a time", () => {
    let ranThrough = 0;
    const RUNS = 300;
    fc.assert(
      fc.property(
        program,
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 50 }),
        fc.array(fc.integer(), { minLength: 6, maxLength: 6 }),
        // Where the code starts: often so that it runs across the end of page 0 into page 1.
        fc.integer({ min: 0, max: 90 }),
        ({ code, pool }, pieces, seed, back) => {
          const entry = Math.max(0, 0x1000 - back * 4);
          const data = [...Array.from({ length: 64 }, (_, i) => Math.imul(i + 1, 0x9e3779b1)), ...pool];
          const regs = { [S0]: DATA, [S1]: entry, [T6]: NOP, ...Object.fromEntries(seed.map((v, i) => [A0 + i, v])) };
          const TOTAL = 3000;
          const [whole, single, random] = [0, 1, 2].map(() => {
            const m = boot(code, data, regs, entry);
            m.memory.clearDirty(); // the first store to a page then takes its slow path
            return m;
          });
          runIn(whole, TOTAL, () => TOTAL);
          // The reference: one instruction at a time, each decoded afresh (the decoded cache is dropped before every step).
          for (let i = 0; single.state === "running" && single.cpu.instret < TOTAL; i++) {
            single.memory.touch(entry, code.length * 4);
            single.run(1);
          }
          runIn(random, TOTAL, (i) => pieces[i % pieces.length]);
          const state = (m: Machine) => ({ state: m.state, crash: m.crash, pc: m.cpu.pc, instret: m.cpu.instret, regs: [...m.cpu.regs.subarray(0, 32)], memory: [...m.memory.read(0, 3 * 4096)], dirty: [...m.memory.dirtyPages()].filter((p) => p >= DATA >> 12) });
          // A rewrite may have planted an ecall (the guest halts), an illegal word or a branch out of the program (it crashes): all three must agree on that too.
          if (whole.state === "running") {
            expect(whole.cpu.instret).toBe(TOTAL);
            ranThrough++;
          }
          expect(state(single)).toEqual(state(whole));
          expect(state(random)).toEqual(state(whole));
        },
      ),
      { numRuns: RUNS },
    );
    // Most programs must run their whole count, or the comparison says little about blocks.
    expect(ranThrough).toBeGreaterThan(RUNS / 2);
  });
});
