/**
 * The RV32IM interpreter, instruction by instruction: a table of edge cases per
 * instruction, each run as a tiny program on a Machine; a property test of the
 * ALU and M extension against a BigInt model; log-dirty tracking of stores; and
 * self-modifying code through the pre-decoded instruction cache.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Exit } from "../src/guest/cpu.ts";
import { Machine, type MachineEnv } from "../src/guest/machine.ts";
import { I_ARITH, LOADS, NOP, OPCODE, R_TYPE, SHIFT_IMM, STORES, enc, encI, encR, encS } from "../src/image/encode.ts";

// ───────────────────────── helpers ─────────────────────────

const PAGES = 16;
const SIZE = PAGES * 4096;
const DATA = 0x2000;
const EBREAK = enc.ebreak();
const env: MachineEnv = { now: () => 0, random32: () => 0x5eed };

const hx = (v: number): string => `0x${(v >>> 0).toString(16)}`;
const hex8 = (v: number): string => (v >>> 0).toString(16).padStart(8, "0");
const le = (...ws: number[]): Uint8Array => new Uint8Array(new Uint32Array(ws.map((w) => w >>> 0)).buffer);

interface Setup {
  /** Initial register values (set after reset). */
  regs?: Record<number, number>;
  /** Bytes written into memory after the code. */
  data?: [addr: number, bytes: Uint8Array][];
  /** Where the code goes and starts (default 0). */
  entry?: number;
}

/** A machine with `code` loaded at `entry`, `data` written, registers set, dirty set cleared. */
function boot(code: number[], s: Setup = {}): Machine {
  const m = new Machine(PAGES, env);
  const entry = s.entry ?? 0;
  m.load({ segments: [{ addr: entry, data: le(...code), size: code.length * 4 }], entry, symbols: {} });
  for (const [addr, bytes] of s.data ?? []) m.memory.write(addr, bytes);
  for (const [r, v] of Object.entries(s.regs ?? {})) m.cpu.regs[Number(r)] = v;
  m.memory.clearDirty();
  return m;
}

function exec(code: number[], s: Setup = {}): Machine {
  const m = boot(code, s);
  m.run(10_000);
  return m;
}

/** Unsigned value of register `n`. */
const x = (m: Machine, n: number): number => m.cpu.regs[n] >>> 0;

/** The program ran to its ebreak: stopped in `breakpoint`, not crashed. */
function expectBreak(m: Machine): void {
  expect(m.crash).toBeNull();
  expect(m.state).toBe("breakpoint");
}

function expectRegs(m: Machine, want: Record<number, number>): void {
  const got: Record<number, string> = {};
  const exp: Record<number, string> = {};
  for (const [r, v] of Object.entries(want)) {
    got[Number(r)] = hx(m.cpu.regs[Number(r)]);
    exp[Number(r)] = hx(v);
  }
  expect(got).toEqual(exp);
}

/** A whole-program case: run `code`, then check either the crash or registers/pc/memory. */
interface Case {
  name: string;
  code: number[];
  setup?: Setup;
  regs?: Record<number, number>;
  /** pc after the program (the ebreak's address + 4). */
  pc?: number;
  mem?: [addr: number, bytes: number[]];
  crash?: { reason: string; pc: number };
}

function check(c: Case): Machine {
  const m = exec(c.code, c.setup);
  if (c.crash) {
    expect(m.state).toBe("crashed");
    expect(m.crash).toEqual(c.crash);
    expect(m.cpu.pc).toBe(c.crash.pc);
  } else {
    expectBreak(m);
  }
  if (c.regs) expectRegs(m, c.regs);
  if (c.pc !== undefined) expect(hx(m.cpu.pc)).toBe(hx(c.pc));
  if (c.mem) expect([...m.memory.read(c.mem[0], c.mem[1].length)]).toEqual(c.mem[1]);
  expect(m.cpu.regs[0]).toBe(0);
  return m;
}

// ───────────────────────── U-type ─────────────────────────

describe("LUI", () => {
  it.each([
    [0, 0],
    [1, 0x1000],
    [0x12345, 0x12345000],
    [0x7ffff, 0x7ffff000],
    [0x80000, 0x80000000],
    [0xfffff, 0xfffff000],
  ])("lui %#: imm20 %i", (imm20, want) => {
    // x3 starts all ones: lui replaces the low 12 bits with zeros too.
    const m = exec([enc.lui(3, imm20), enc.lui(0, imm20), EBREAK], { regs: { 3: -1 } });
    expectBreak(m);
    expect(hx(x(m, 3))).toBe(hx(want));
    expect(m.cpu.regs[0]).toBe(0);
  });
});

describe("AUIPC", () => {
  it.each([
    { at: 0, imm20: 0, want: 0 },
    { at: 0x100, imm20: 0, want: 0x100 },
    { at: 0x100, imm20: 1, want: 0x1100 },
    { at: 0x2004, imm20: 0x80000, want: 0x80002004 },
    { at: 0x100, imm20: 0xfffff, want: 0xfffff100 }, // -4096 + pc
    { at: 0x3000, imm20: 0xffffd, want: 0 }, // wraps to 0
  ])("auipc at $at, imm20 $imm20", ({ at, imm20, want }) => {
    const m = exec([enc.auipc(3, imm20), enc.auipc(0, imm20), EBREAK], { entry: at });
    expectBreak(m);
    expect(hx(x(m, 3))).toBe(hx(want));
    expect(m.cpu.regs[0]).toBe(0);
  });

  it("uses its own pc, not the entry's", () => {
    const m = exec([NOP, NOP, enc.auipc(3, 2), EBREAK], { entry: 0x40 });
    expect(hx(x(m, 3))).toBe(hx(0x2048));
  });
});

// ───────────────────────── jumps ─────────────────────────

const JAL_CASES: Case[] = [
  {
    name: "forward: link = pc+4, skips one instruction",
    code: [enc.jal(1, 8), enc.addi(5, 0, 1), enc.addi(6, 0, 1), EBREAK],
    regs: { 1: 4, 5: 0, 6: 1 },
    pc: 16,
  },
  {
    name: "backward (negative offset)",
    code: [enc.jal(0, 12), enc.addi(6, 0, 2), EBREAK, enc.jal(1, -8)],
    regs: { 1: 16, 6: 2 },
    pc: 12,
  },
  {
    name: "rd = x0 discards the link",
    code: [enc.jal(0, 8), enc.addi(5, 0, 1), EBREAK],
    regs: { 0: 0, 5: 0 },
    pc: 12,
  },
  {
    name: "large negative offset (sign-extended 21-bit immediate)",
    code: [enc.jal(1, -0x3ff8)],
    setup: { entry: 0x4000, data: [[0x8, le(EBREAK)]] },
    regs: { 1: 0x4004 },
    pc: 0xc,
  },
  {
    name: "large positive offset",
    code: [enc.jal(1, 0x8000)],
    setup: { data: [[0x8000, le(EBREAK)]] },
    regs: { 1: 4 },
    pc: 0x8004,
  },
  {
    name: "misaligned target crashes at the jal, link not written",
    code: [NOP, enc.jal(1, 6)],
    regs: { 1: 0 },
    crash: { reason: "misaligned jump target 0x0000000a", pc: 4 },
  },
  {
    name: "target beyond memory crashes at the target",
    code: [enc.jal(1, 0x10000)],
    crash: { reason: "instruction fetch outside memory at 0x00010000", pc: 0x10000 },
  },
  {
    name: "target below 0 wraps and crashes",
    code: [enc.jal(0, -8)],
    crash: { reason: "instruction fetch outside memory at 0xfffffff8", pc: 0xfffffff8 },
  },
];

describe("JAL", () => {
  it.each(JAL_CASES)("$name", (c) => void check(c));
});

const JALR_BODY = (w: number): number[] => [w, enc.addi(6, 0, 1), EBREAK, EBREAK];

const JALR_CASES: Case[] = [
  { name: "to rs1, link = pc+4", code: JALR_BODY(enc.jalr(1, 5, 0)), setup: { regs: { 5: 12 } }, regs: { 1: 4, 6: 0 }, pc: 16 },
  { name: "clears bit 0 of the target", code: JALR_BODY(enc.jalr(1, 5, 0)), setup: { regs: { 5: 13 } }, regs: { 1: 4, 6: 0 }, pc: 16 },
  { name: "negative immediate", code: JALR_BODY(enc.jalr(1, 5, -8)), setup: { regs: { 5: 20 } }, regs: { 1: 4 }, pc: 16 },
  { name: "immediate -2048", code: JALR_BODY(enc.jalr(1, 5, -2048)), setup: { regs: { 5: 2060 } }, regs: { 1: 4 }, pc: 16 },
  { name: "immediate 2047, odd sum", code: JALR_BODY(enc.jalr(1, 5, 2047)), setup: { regs: { 5: -2034 } }, regs: { 1: 4 }, pc: 16 },
  { name: "address wraps around 2^32", code: JALR_BODY(enc.jalr(1, 5, 0x1c)), setup: { regs: { 5: -0x10 } }, regs: { 1: 4 }, pc: 16 },
  { name: "rd = rs1: target read before the link is written", code: JALR_BODY(enc.jalr(5, 5, 0)), setup: { regs: { 5: 12 } }, regs: { 5: 4 }, pc: 16 },
  { name: "rd = x0 (ret)", code: JALR_BODY(enc.jalr(0, 1, 0)), setup: { regs: { 1: 12 } }, regs: { 1: 12, 6: 0 }, pc: 16 },
  {
    name: "misaligned target crashes at the jalr, link not written",
    code: [NOP, enc.jalr(1, 5, 0)],
    setup: { regs: { 5: 14 } },
    regs: { 1: 0, 5: 14 },
    crash: { reason: "misaligned jump target 0x0000000e", pc: 4 },
  },
  {
    name: "misaligned after clearing bit 0",
    code: [enc.jalr(1, 5, 0)],
    setup: { regs: { 5: 15 } },
    regs: { 1: 0 },
    crash: { reason: "misaligned jump target 0x0000000e", pc: 0 },
  },
  {
    name: "misaligned by the immediate",
    code: [enc.jalr(1, 5, 2)],
    setup: { regs: { 5: 16 } },
    crash: { reason: "misaligned jump target 0x00000012", pc: 0 },
  },
  {
    name: "target beyond memory crashes at the target",
    code: [enc.jalr(1, 5, 0)],
    setup: { regs: { 5: SIZE } },
    regs: { 1: 4 },
    crash: { reason: `instruction fetch outside memory at 0x${hex8(SIZE)}`, pc: SIZE },
  },
];

describe("JALR", () => {
  it.each(JALR_CASES)("$name", (c) => void check(c));
});

// ───────────────────────── branches ─────────────────────────

type BranchName = "beq" | "bne" | "blt" | "bge" | "bltu" | "bgeu";
const BRANCH_CASES: Record<BranchName, [a: number, b: number, taken: boolean][]> = {
  beq: [[0, 0, true], [1, 0, false], [-1, 0xffffffff, true], [0x80000000, 0, false], [0x80000000, 0x80000000, true]],
  bne: [[0, 0, false], [1, 0, true], [-1, 0xffffffff, false], [0x80000000, 0, true], [1, 0x80000001, true]],
  blt: [[-1, 0, true], [0, -1, false], [0x80000000, 0x7fffffff, true], [0x7fffffff, 0x80000000, false], [5, 5, false], [-2, -1, true]],
  bge: [[-1, 0, false], [0, -1, true], [5, 5, true], [0x7fffffff, 0x80000000, true], [0x80000000, 0x80000000, true], [-2, -1, false]],
  bltu: [[-1, 0, false], [0, -1, true], [0x7fffffff, 0x80000000, true], [5, 5, false], [0, 1, true]],
  bgeu: [[-1, 0, true], [0, -1, false], [5, 5, true], [0x80000000, 0x7fffffff, true], [0, 1, false]],
};

describe.each(Object.entries(BRANCH_CASES))("%s", (name, rows) => {
  const br = enc[name as BranchName];
  const table = rows.map(([a, b, taken]) => ({ a, b, taken, t: `${hx(a)}, ${hx(b)}: ${taken ? "taken" : "not taken"}` }));

  it.each(table)("forward: $t", ({ a, b, taken }) => {
    // 0: b x1, x2, +12 → 12;  4: x7 = 2 (fall through);  8: ebreak;  12: x7 = 1;  16: ebreak
    const m = exec([br(1, 2, 12), enc.addi(7, 0, 2), EBREAK, enc.addi(7, 0, 1), EBREAK], { regs: { 1: a, 2: b } });
    expectBreak(m);
    expect(x(m, 7)).toBe(taken ? 1 : 2);
    expect(m.cpu.pc).toBe(taken ? 20 : 12);
  });

  it.each(table)("backward: $t", ({ a, b, taken }) => {
    // 0: j 16;  4: x7 = 1 (taken);  8: ebreak;  12: (never);  16: b x1, x2, -12 → 4;  20: x7 = 2;  24: ebreak
    const m = exec([enc.jal(0, 16), enc.addi(7, 0, 1), EBREAK, 0, br(1, 2, -12), enc.addi(7, 0, 2), EBREAK], {
      regs: { 1: a, 2: b },
    });
    expectBreak(m);
    expect(x(m, 7)).toBe(taken ? 1 : 2);
    expect(m.cpu.pc).toBe(taken ? 12 : 28);
  });

  it.each(table)("misaligned offset: $t crashes only if taken", ({ a, b, taken }) => {
    const m = exec([NOP, br(1, 2, 6), EBREAK], { regs: { 1: a, 2: b } });
    if (taken) {
      expect(m.state).toBe("crashed");
      expect(m.crash).toEqual({ reason: "misaligned branch target 0x0000000a", pc: 4 });
    } else {
      expectBreak(m);
      expect(m.cpu.pc).toBe(12);
    }
  });

  it("the same register as both operands", () => {
    const m = exec([br(1, 1, 12), enc.addi(7, 0, 2), EBREAK, enc.addi(7, 0, 1), EBREAK], { regs: { 1: -7 } });
    expectBreak(m);
    const equalTaken = name === "beq" || name === "bge" || name === "bgeu";
    expect(x(m, 7)).toBe(equalTaken ? 1 : 2);
  });
});

// ───────────────────────── loads ─────────────────────────

const LOAD_DATA = [0x80, 0x7f, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89];

type LoadName = keyof typeof LOADS;
/** [offset of x1 from DATA, immediate, value loaded]. */
const LOAD_CASES: Record<LoadName, [base: number, imm: number, want: number][]> = {
  lb: [[0, 0, 0xffffff80], [1, 0, 0x7f], [0, 2, 0xffffffff], [4, -1, 0x01], [2048, -2048, 0xffffff80], [-2040, 2047, 0xffffff89]],
  lbu: [[0, 0, 0x80], [2, 0, 0xff], [0, 7, 0x89], [8, -1, 0x89], [2048, -2048, 0x80]],
  lh: [[0, 0, 0x7f80], [1, 0, 0xffffff7f], [2, 0, 0x01ff], [3, 0, 0x2301], [6, 0, 0xffff8967], [8, -2, 0xffff8967], [2053, -2048, 0x6745]],
  lhu: [[1, 0, 0xff7f], [6, 0, 0x8967], [5, 0, 0x6745], [0, 0, 0x7f80], [8, -2, 0x8967]],
  lw: [[0, 0, 0x01ff7f80], [1, 0, 0x2301ff7f], [3, 0, 0x67452301], [4, 0, 0x89674523], [2052, -2048, 0x89674523], [6, -3, 0x67452301]],
};

describe.each(Object.entries(LOAD_CASES))("%s", (name, rows) => {
  const ld = enc[name as LoadName];
  const table = rows.map(([base, imm, want]) => ({ base, imm, want, t: `${imm}(DATA${base >= 0 ? "+" : ""}${base}) = ${hx(want)}` }));

  it.each(table)("$t", ({ base, imm, want }) => {
    const m = exec([ld(3, 1, imm), ld(0, 1, imm), ld(1, 1, imm), EBREAK], {
      regs: { 1: DATA + base, 3: 0x55555555 },
      data: [[DATA, new Uint8Array(LOAD_DATA)]],
    });
    expectBreak(m);
    expect(hx(x(m, 3))).toBe(hx(want));
    expect(hx(x(m, 1))).toBe(hx(want)); // rd = rs1
    expect(m.cpu.regs[0]).toBe(0);
    expect(m.memory.dirtyPageCount).toBe(0); // loads dirty nothing
  });
});

const LOAD_WIDTH: Record<LoadName, number> = { lb: 1, lbu: 1, lh: 2, lhu: 2, lw: 4 };

describe("loads at the end of memory", () => {
  const rows = Object.entries(LOAD_WIDTH).flatMap(([name, w]) => [
    { name, addr: SIZE - w, ok: true },
    { name, addr: SIZE - w + 1, ok: false },
    { name, addr: SIZE, ok: false },
    { name, addr: 0xffffffff, ok: false },
  ]);
  it.each(rows)("$name at $addr: ok = $ok", ({ name, addr, ok }) => {
    const ld = enc[name as LoadName];
    const m = exec([NOP, ld(3, 1, 0), EBREAK], {
      regs: { 1: addr, 3: 0x5555 },
      data: [[SIZE - 4, new Uint8Array([1, 2, 3, 4])]],
    });
    if (ok) {
      expectBreak(m);
      expect(x(m, 3)).toBe(name === "lw" ? 0x04030201 : name.startsWith("lh") ? 0x0403 : 4);
    } else {
      expect(m.state).toBe("crashed");
      expect(m.crash).toEqual({ reason: `load outside memory at 0x${hex8(addr)}`, pc: 4 });
      expect(x(m, 3)).toBe(0x5555); // rd not written
    }
  });

  it("an address that wraps around 2^32 back into memory is fine", () => {
    const m = exec([enc.lw(3, 1, 0x104), EBREAK], { regs: { 1: -4 }, data: [[0x100, le(0xcafef00d)]] });
    expectBreak(m);
    expect(hx(x(m, 3))).toBe(hx(0xcafef00d));
  });
});

// ───────────────────────── stores ─────────────────────────

type StoreName = keyof typeof STORES;
const AA = 0xaa;
/** [offset of x1 from DATA, immediate, value in x2, the 12 bytes at DATA afterwards]. */
const STORE_CASES: Record<StoreName, [base: number, imm: number, value: number, bytes: number[]][]> = {
  sb: [
    [0, 0, 0x12345678, [0x78, AA, AA, AA, AA, AA, AA, AA, AA, AA, AA, AA]],
    [3, 0, 0xff, [AA, AA, AA, 0xff, AA, AA, AA, AA, AA, AA, AA, AA]],
    [8, -1, 0x01, [AA, AA, AA, AA, AA, AA, AA, 0x01, AA, AA, AA, AA]],
    [2049, -2048, 0x5a, [AA, 0x5a, AA, AA, AA, AA, AA, AA, AA, AA, AA, AA]],
    [-2036, 2047, 0x80, [AA, AA, AA, AA, AA, AA, AA, AA, AA, AA, AA, 0x80]],
  ],
  sh: [
    [0, 0, 0x12345678, [0x78, 0x56, AA, AA, AA, AA, AA, AA, AA, AA, AA, AA]],
    [1, 0, 0x12345678, [AA, 0x78, 0x56, AA, AA, AA, AA, AA, AA, AA, AA, AA]],
    [7, 0, 0xffff8001, [AA, AA, AA, AA, AA, AA, AA, 0x01, 0x80, AA, AA, AA]],
    [12, -3, 0xbeef, [AA, AA, AA, AA, AA, AA, AA, AA, AA, 0xef, 0xbe, AA]],
  ],
  sw: [
    [0, 0, 0x12345678, [0x78, 0x56, 0x34, 0x12, AA, AA, AA, AA, AA, AA, AA, AA]],
    [3, 0, 0x12345678, [AA, AA, AA, 0x78, 0x56, 0x34, 0x12, AA, AA, AA, AA, AA]],
    [2050, -2048, 0x12345678, [AA, AA, 0x78, 0x56, 0x34, 0x12, AA, AA, AA, AA, AA, AA]],
    [4, -1, 0x80000001, [AA, AA, AA, 0x01, 0x00, 0x00, 0x80, AA, AA, AA, AA, AA]],
    [8, 0, 0, [AA, AA, AA, AA, AA, AA, AA, AA, 0, 0, 0, 0]],
  ],
};

describe.each(Object.entries(STORE_CASES))("%s", (name, rows) => {
  const st = enc[name as StoreName];
  const table = rows.map(([base, imm, value, bytes]) => ({ base, imm, value, bytes, t: `${hx(value)} → ${imm}(DATA+${base})` }));

  it.each(table)("$t", ({ base, imm, value, bytes }) => {
    const m = exec([st(2, 1, imm), EBREAK], {
      regs: { 1: DATA + base, 2: value },
      data: [[DATA - 4, new Uint8Array(20).fill(AA)]],
    });
    expectBreak(m);
    expect([...m.memory.read(DATA, 12)]).toEqual(bytes);
    expect([...m.memory.read(DATA - 4, 4)]).toEqual([AA, AA, AA, AA]);
    expect([...m.memory.read(DATA + 12, 4)]).toEqual([AA, AA, AA, AA]);
  });

  it("stores x0 as zero, and x0 as base is address 0 + imm", () => {
    const m = exec([st(0, 0, 0x100), EBREAK], { data: [[0x100, new Uint8Array(4).fill(AA)]] });
    expectBreak(m);
    const w = { sb: 1, sh: 2, sw: 4 }[name as StoreName];
    expect([...m.memory.read(0x100, 4)]).toEqual([0, 0, 0, 0].map((z, i) => (i < w ? z : AA)));
  });
});

const STORE_WIDTH: Record<StoreName, number> = { sb: 1, sh: 2, sw: 4 };

describe("stores at the end of memory", () => {
  const rows = Object.entries(STORE_WIDTH).flatMap(([name, w]) => [
    { name, addr: SIZE - w, ok: true },
    { name, addr: SIZE - w + 1, ok: false },
    { name, addr: SIZE, ok: false },
    { name, addr: 0xfffffffe, ok: false },
  ]);
  it.each(rows)("$name at $addr: ok = $ok", ({ name, addr, ok }) => {
    const st = enc[name as StoreName];
    const m = exec([NOP, st(2, 1, 0), EBREAK], { regs: { 1: addr, 2: -1 } });
    if (ok) {
      expectBreak(m);
      expect([...m.memory.read(SIZE - 4, 4)].filter((b) => b === 0xff)).toHaveLength(STORE_WIDTH[name as StoreName]);
      expect([...m.memory.dirtyPages()]).toEqual([PAGES - 1]);
    } else {
      expect(m.state).toBe("crashed");
      expect(m.crash).toEqual({ reason: `store outside memory at 0x${hex8(addr)}`, pc: 4 });
      expect([...m.memory.read(SIZE - 4, 4)]).toEqual([0, 0, 0, 0]);
      expect(m.memory.dirtyPageCount).toBe(0);
    }
  });
});

// ───────────────────────── register-immediate ALU ─────────────────────────

type IName = keyof typeof I_ARITH | keyof typeof SHIFT_IMM;
/** [x1, immediate (or shamt), result]. */
const I_CASES: Record<IName, [a: number, imm: number, want: number][]> = {
  addi: [[5, -1, 4], [0x7fffffff, 1, 0x80000000], [0, -2048, 0xfffff800], [0, 2047, 0x7ff], [-1, 1, 0], [0x80000000, -1, 0x7fffffff]],
  slti: [[-1, 0, 1], [0, -1, 0], [0x80000000, -2048, 1], [-2048, -2048, 0], [2046, 2047, 1], [0x7fffffff, 2047, 0]],
  sltiu: [[0, 1, 1], [1, 1, 0], [5, -1, 1], [0xfffff800, -2048, 0], [0xfffff7ff, -2048, 1], [0xffffffff, -1, 0], [0x80000000, 2047, 0]],
  xori: [[0x12345678, -1, 0xedcba987], [0xff, 0x0f, 0xf0], [0, -2048, 0xfffff800], [0x80000000, 0x7ff, 0x800007ff]],
  ori: [[0, -2048, 0xfffff800], [0x12340000, 0x7ff, 0x123407ff], [0x80000000, 1, 0x80000001], [0x0f0, 0x00f, 0x0ff]],
  andi: [[-1, -2048, 0xfffff800], [0x12345678, 0xff, 0x78], [0xffffffff, 2047, 0x7ff], [0x80000000, -1, 0x80000000], [0x0f0, 0x00f, 0]],
  slli: [[1, 31, 0x80000000], [0xffffffff, 0, 0xffffffff], [0x12345678, 4, 0x23456780], [3, 31, 0x80000000], [0x80000001, 1, 2]],
  srli: [[0x80000000, 31, 1], [-1, 1, 0x7fffffff], [-1, 0, 0xffffffff], [0x12345678, 4, 0x01234567]],
  srai: [[0x80000000, 31, 0xffffffff], [0x80000000, 1, 0xc0000000], [0x7fffffff, 31, 0], [-1, 0, 0xffffffff], [-16, 2, 0xfffffffc]],
};

describe.each(Object.entries(I_CASES))("%s", (name, rows) => {
  const op = enc[name as IName];
  const table = rows.map(([a, imm, want]) => ({ a, imm, want, t: `${hx(a)}, ${imm} = ${hx(want)}` }));
  it.each(table)("$t", ({ a, imm, want }) => {
    // rd = x3; rd = x0 (discarded); rd = rs1.
    const m = exec([op(3, 1, imm), op(0, 1, imm), op(1, 1, imm), EBREAK], { regs: { 1: a } });
    expectBreak(m);
    expect(hx(x(m, 3))).toBe(hx(want));
    expect(hx(x(m, 1))).toBe(hx(want));
    expect(m.cpu.regs[0]).toBe(0);
  });
});

// ───────────────────────── register-register ALU and M ─────────────────────────

type RName = keyof typeof R_TYPE;
const MIN = 0x80000000;
/** [x1, x2, result]. */
const R_CASES: Record<RName, [a: number, b: number, want: number][]> = {
  add: [[1, 2, 3], [0x7fffffff, 1, MIN], [0xffffffff, 1, 0], [MIN, MIN, 0], [-5, 3, -2]],
  sub: [[3, 5, -2], [MIN, 1, 0x7fffffff], [0, MIN, MIN], [0, 1, 0xffffffff], [-1, -1, 0]],
  // Shifts use only the low 5 bits of rs2.
  sll: [[1, 31, MIN], [1, 32, 1], [1, 33, 2], [0xffffffff, 0xffffffe4, 0xfffffff0], [0x12345678, 0, 0x12345678], [1, -1, MIN]],
  srl: [[MIN, 31, 1], [MIN, 32, MIN], [0xffffffff, 0x24, 0x0fffffff], [-1, -1, 1], [0x12345678, 0x100, 0x12345678]],
  sra: [[MIN, 31, 0xffffffff], [MIN, 0x3f, 0xffffffff], [MIN, 32, MIN], [0x7fffffff, 30, 1], [-16, 0x22, -4], [-1, 31, -1]],
  slt: [[-1, 0, 1], [0, -1, 0], [MIN, 0x7fffffff, 1], [0x7fffffff, MIN, 0], [5, 5, 0]],
  sltu: [[-1, 0, 0], [0, -1, 1], [0x7fffffff, MIN, 1], [5, 5, 0], [0, 1, 1]],
  xor: [[0xff00ff00, 0x0ff00ff0, 0xf0f0f0f0], [-1, MIN, 0x7fffffff], [0x1234, 0x1234, 0]],
  or: [[0xff00ff00, 0x0ff00ff0, 0xfff0fff0], [0, 0, 0], [MIN, 1, 0x80000001]],
  and: [[0xff00ff00, 0x0ff00ff0, 0x0f000f00], [-1, MIN, MIN], [0x5555, 0xaaaa, 0]],
  mul: [[MIN, -1, MIN], [-1, -1, 1], [0x7fffffff, 0x7fffffff, 1], [0x10000, 0x10000, 0], [-3, 7, -21], [0x12345678, 0x9abcdef0, 0x242d2080]],
  mulh: [[MIN, MIN, 0x40000000], [-1, -1, 0], [MIN, -1, 0], [0x7fffffff, 0x7fffffff, 0x3fffffff], [-1, 1, 0xffffffff], [MIN, 0x7fffffff, 0xc0000000], [0x12345678, 0x9abcdef0, 0xf8cc93d6]],
  mulhsu: [[-1, -1, 0xffffffff], [MIN, 0xffffffff, MIN], [1, -1, 0], [2, MIN, 1], [-2, MIN, 0xffffffff], [0x7fffffff, 0xffffffff, 0x7ffffffe]],
  mulhu: [[-1, -1, 0xfffffffe], [MIN, 2, 1], [0xffffffff, 1, 0], [0x10000, 0x10000, 1], [0x12345678, 0x9abcdef0, 0x0b00ea4e]],
  // Overflow: MIN / -1 = MIN rem 0. Division by zero: quotient all ones, remainder the dividend.
  div: [[7, 2, 3], [-7, 2, -3], [7, -2, -3], [-7, -2, 3], [MIN, -1, MIN], [5, 0, -1], [0, 0, -1], [MIN, 0, -1], [MIN, 1, MIN]],
  divu: [[7, 2, 3], [-1, 2, 0x7fffffff], [MIN, -1, 0], [5, 0, 0xffffffff], [0, 0, 0xffffffff], [-1, 1, 0xffffffff], [-1, -1, 1]],
  rem: [[7, 2, 1], [-7, 2, -1], [7, -2, 1], [-7, -2, -1], [MIN, -1, 0], [5, 0, 5], [-5, 0, -5], [MIN, 0, MIN], [0, 0, 0]],
  remu: [[7, 2, 1], [-1, 2, 1], [5, 0, 5], [-1, 0, 0xffffffff], [MIN, 0xffffffff, MIN], [0xffffffff, MIN, 0x7fffffff]],
};

describe.each(Object.entries(R_CASES))("%s", (name, rows) => {
  const op = enc[name as RName];
  const table = rows.map(([a, b, want]) => ({ a, b, want, t: `${hx(a)}, ${hx(b)} = ${hx(want)}` }));
  it.each(table)("$t", ({ a, b, want }) => {
    // rd = x3; rd = x0 (discarded); rd = rs2; then rs1 = rs2 = x4 with x4 = a.
    const m = exec([op(3, 1, 2), op(0, 1, 2), op(2, 1, 2), EBREAK], { regs: { 1: a, 2: b } });
    expectBreak(m);
    expect(hx(x(m, 3))).toBe(hx(want));
    expect(hx(x(m, 2))).toBe(hx(want));
    expect(hx(x(m, 1))).toBe(hx(a));
    expect(m.cpu.regs[0]).toBe(0);
  });
});

// ───────────────────────── FENCE, ECALL, EBREAK ─────────────────────────

describe("FENCE", () => {
  it.each([
    { name: "fence iorw, iorw", word: enc.fence() },
    { name: "fence with empty sets", word: enc.fence(0, 0) },
    { name: "fence.tso-style fm bits", word: (0x8330000f | 0) >>> 0 },
    { name: "fence with rd/rs1 fields set (reserved, ignored)", word: encI(OPCODE.MISC_MEM, 5, 0, 6, 0xff) },
    { name: "fence.i", word: encI(OPCODE.MISC_MEM, 0, 1, 0, 0) },
  ])("$name is a no-op", ({ word }) => {
    const m = exec([word, enc.addi(7, 7, 1), EBREAK], { regs: { 5: 77, 6: 66 } });
    expectBreak(m);
    expectRegs(m, { 5: 77, 6: 66, 7: 1 });
    expect(m.cpu.pc).toBe(12);
    expect(m.cpu.instret).toBe(3);
  });
});

describe("ECALL", () => {
  it.each([0, 1, 5])("the hart stops on it with pc at the ecall (%i instructions before)", (before) => {
    const m = boot([...Array<number>(before).fill(NOP), enc.ecall(), EBREAK]);
    expect(m.cpu.run(100)).toBe(Exit.ECALL);
    expect(m.cpu.pc).toBe(before * 4);
    expect(m.cpu.instret).toBe(before + 1);
  });

  it.each([
    { a7: 4, a0: 0 }, // POLL, nothing pending
    { a7: 6, a0: 0x5eed }, // RANDOM from the env
    { a7: 99, a0: -38 }, // ENOSYS
  ])("on a machine, a7 = $a7 returns $a0 in a0 and continues after it", ({ a7, a0 }) => {
    const m = exec([enc.addi(17, 0, a7), enc.ecall(), enc.addi(7, 10, 0), EBREAK], { regs: { 10: 1234 } });
    expectBreak(m);
    expect(m.cpu.regs[7]).toBe(a0);
    expect(m.cpu.pc).toBe(16);
  });
});

describe("EBREAK", () => {
  it.each([0, 2])("the hart stops on it with pc at the ebreak (%i before)", (before) => {
    const m = boot([...Array<number>(before).fill(NOP), EBREAK]);
    expect(m.cpu.run(100)).toBe(Exit.EBREAK);
    expect(m.cpu.pc).toBe(before * 4);
  });

  it("on a machine: breakpoint after it, and resumable", () => {
    const m = exec([enc.addi(5, 0, 1), EBREAK, enc.addi(5, 5, 1), EBREAK]);
    expectBreak(m);
    expect(m.cpu.pc).toBe(8);
    expect(x(m, 5)).toBe(1);
    expect(m.resume()).toBe(true);
    m.run(100);
    expectBreak(m);
    expect(m.cpu.pc).toBe(16);
    expect(x(m, 5)).toBe(2);
  });
});

// ───────────────────────── illegal instructions ─────────────────────────

describe("illegal instructions crash with the word and pc", () => {
  it.each([
    { name: "all zeros", word: 0 },
    { name: "all ones", word: 0xffffffff },
    { name: "compressed c.nop (16-bit)", word: 0x00000001 },
    { name: "unknown opcode 0x7f", word: 0x0000007f },
    { name: "ld (RV64)", word: encI(OPCODE.LOAD, 1, 3, 2, 0) },
    { name: "lwu (RV64)", word: encI(OPCODE.LOAD, 1, 6, 2, 0) },
    { name: "load funct3 7", word: encI(OPCODE.LOAD, 1, 7, 2, 0) },
    { name: "sd (RV64)", word: encS(OPCODE.STORE, 3, 1, 2, 0) },
    { name: "store funct3 4", word: encS(OPCODE.STORE, 4, 1, 2, 0) },
    { name: "branch funct3 2", word: (enc.beq(1, 2, 8) | (2 << 12)) >>> 0 },
    { name: "branch funct3 3", word: (enc.beq(1, 2, 8) | (3 << 12)) >>> 0 },
    { name: "jalr funct3 1", word: encI(OPCODE.JALR, 1, 1, 2, 0) },
    { name: "slli with shamt bit 5 (RV64)", word: encI(OPCODE.OP_IMM, 1, 1, 2, 32) },
    { name: "srli with shamt bit 5", word: encI(OPCODE.OP_IMM, 1, 5, 2, 32) },
    { name: "srai with funct7 0x21", word: encI(OPCODE.OP_IMM, 1, 5, 2, 0x420) },
    { name: "slli with funct7 0x20", word: encI(OPCODE.OP_IMM, 1, 1, 2, 0x400) },
    { name: "sll with funct7 0x20", word: encR(OPCODE.OP, 1, 1, 2, 3, 0x20) },
    { name: "add with funct7 0x02", word: encR(OPCODE.OP, 1, 0, 2, 3, 0x02) },
    { name: "and with funct7 0x40", word: encR(OPCODE.OP, 1, 7, 2, 3, 0x40) },
    { name: "fence funct3 2", word: encI(OPCODE.MISC_MEM, 0, 2, 0, 0) },
    { name: "uret", word: 0x00200073 },
    { name: "mret", word: 0x30200073 },
    { name: "wfi", word: 0x10500073 },
    { name: "ecall with rd set", word: 0x000000f3 },
    { name: "csrrw", word: (enc.csrrs(1, 0xc00) & ~(7 << 12)) | (1 << 12) },
    { name: "csrrs with rs1 ≠ x0 (a write)", word: enc.csrrs(1, 0xc00, 2) },
    { name: "csrrs of mstatus", word: enc.csrrs(1, 0x300) },
    { name: "AMO (A extension)", word: 0x0020a1af },
    { name: "flw (F extension)", word: 0x0000a007 },
  ])("$name", ({ word }) => {
    const m = exec([NOP, word >>> 0, EBREAK], { regs: { 1: 0x1111 } });
    expect(m.state).toBe("crashed");
    expect(m.crash).toEqual({ reason: `illegal instruction 0x${hex8(word)}`, pc: 4 });
    expect(m.cpu.pc).toBe(4);
    expect(x(m, 1)).toBe(0x1111);
    expect(m.cpu.instret).toBe(1);
  });
});

// ───────────────────────── writes to x0 ─────────────────────────

describe("writes to x0 are discarded", () => {
  const rows: { name: string; word: number }[] = [
    { name: "lui", word: enc.lui(0, 0xfffff) },
    { name: "auipc", word: enc.auipc(0, 1) },
    { name: "jal (to the next instruction)", word: enc.jal(0, 4) },
    { name: "jalr (to the next instruction)", word: enc.jalr(0, 0, 4) },
    { name: "rdcycle", word: enc.csrrs(0, 0xc00) },
    ...Object.keys(LOADS).map((n) => ({ name: n, word: enc[n as LoadName](0, 0, 0x700) })),
    ...Object.keys(I_ARITH).map((n) => ({ name: n, word: enc[n as keyof typeof I_ARITH](0, 1, -1) })),
    ...Object.keys(SHIFT_IMM).map((n) => ({ name: n, word: enc[n as keyof typeof SHIFT_IMM](0, 1, 1) })),
    ...Object.keys(R_TYPE).map((n) => ({ name: n, word: enc[n as RName](0, 1, 2) })),
  ];
  it.each(rows)("$name", ({ word }) => {
    // x0 must still read as zero afterwards, as an operand and as a store source.
    const m = exec([word, enc.add(5, 0, 1), enc.sw(0, 0, 0x708), EBREAK], {
      regs: { 1: 0x7ffffff5, 2: 3 },
      data: [[0x700, new Uint8Array(12).fill(0xff)]],
    });
    expectBreak(m);
    expect(m.cpu.regs[0]).toBe(0);
    expect(x(m, 5)).toBe(0x7ffffff5);
    expect(m.memory.readU32(0x708)).toBe(0);
    expect(m.cpu.pc).toBe(16);
  });
});

// ───────────────────────── properties against a BigInt model ─────────────────────────

const S = (v: number): bigint => BigInt(v | 0);
const U = (v: number): bigint => BigInt(v >>> 0);
const w32 = (v: bigint): number => Number(BigInt.asUintN(32, v));
const sh = (b: number): bigint => BigInt(b & 31);

/** The spec, written over unbounded integers; only division by zero needs its own rule. */
const MODEL: Record<RName, (a: number, b: number) => number> = {
  add: (a, b) => w32(S(a) + S(b)),
  sub: (a, b) => w32(S(a) - S(b)),
  sll: (a, b) => w32(U(a) << sh(b)),
  slt: (a, b) => (S(a) < S(b) ? 1 : 0),
  sltu: (a, b) => (U(a) < U(b) ? 1 : 0),
  xor: (a, b) => w32(U(a) ^ U(b)),
  srl: (a, b) => w32(U(a) >> sh(b)),
  sra: (a, b) => w32(S(a) >> sh(b)),
  or: (a, b) => w32(U(a) | U(b)),
  and: (a, b) => w32(U(a) & U(b)),
  mul: (a, b) => w32(S(a) * S(b)),
  mulh: (a, b) => w32((S(a) * S(b)) >> 32n),
  mulhsu: (a, b) => w32((S(a) * U(b)) >> 32n),
  mulhu: (a, b) => w32((U(a) * U(b)) >> 32n),
  div: (a, b) => ((b | 0) === 0 ? 0xffffffff : w32(S(a) / S(b))),
  divu: (a, b) => ((b | 0) === 0 ? 0xffffffff : w32(U(a) / U(b))),
  rem: (a, b) => ((b | 0) === 0 ? a >>> 0 : w32(S(a) % S(b))),
  remu: (a, b) => ((b | 0) === 0 ? a >>> 0 : w32(U(a) % U(b))),
};

const I_MODEL: Record<IName, (a: number, imm: number) => number> = {
  addi: MODEL.add,
  slti: MODEL.slt,
  sltiu: MODEL.sltu,
  xori: MODEL.xor,
  ori: MODEL.or,
  andi: MODEL.and,
  slli: MODEL.sll,
  srli: MODEL.srl,
  srai: MODEL.sra,
};

const EDGES = [0, 1, -1, 2, -2, 31, 32, 0x7fffffff, -0x80000000, 0x7ffffffe, -0x7fffffff, 0xffff, 0x10000];
const word32 = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...EDGES) },
  { weight: 2, arbitrary: fc.integer({ min: -0x80000000, max: 0x7fffffff }) },
);
const imm12 = fc.oneof(fc.constantFrom(0, 1, -1, 2047, -2048, 31), fc.integer({ min: -2048, max: 2047 }));
const shamt = fc.oneof(fc.constantFrom(0, 1, 31), fc.integer({ min: 0, max: 31 }));

describe("ALU and M extension against a BigInt model", () => {
  it("register-register forms", () => {
    const names = Object.keys(R_TYPE) as RName[];
    // One program computes every op at once: x(10+i) = op_i(x1, x2).
    const m = boot([...names.map((n, i) => enc[n](10 + i, 1, 2)), EBREAK]);
    fc.assert(
      fc.property(word32, word32, (a, b) => {
        m.cpu.reset(0, SIZE);
        m.cpu.regs[1] = a;
        m.cpu.regs[2] = b;
        expect(m.cpu.run(100)).toBe(Exit.EBREAK);
        const got = names.map((n, i) => `${n} ${hx(m.cpu.regs[10 + i])}`);
        const want = names.map((n) => `${n} ${hx(MODEL[n](a, b))}`);
        expect(got).toEqual(want);
      }),
      { numRuns: 2500 },
    );
  });

  it("register-immediate forms (rewriting the immediates in place each run)", () => {
    const arith = Object.keys(I_ARITH) as (keyof typeof I_ARITH)[];
    const shifts = Object.keys(SHIFT_IMM) as (keyof typeof SHIFT_IMM)[];
    const m = boot([...arith.map(() => NOP), ...shifts.map(() => NOP), EBREAK]);
    fc.assert(
      fc.property(word32, imm12, shamt, (a, imm, s) => {
        // Host writes over code the hart has already decoded: the new words must run.
        m.memory.write(0, le(...arith.map((n, i) => enc[n](10 + i, 1, imm)), ...shifts.map((n, i) => enc[n](20 + i, 1, s))));
        m.cpu.reset(0, SIZE);
        m.cpu.regs[1] = a;
        expect(m.cpu.run(100)).toBe(Exit.EBREAK);
        const got = [...arith.map((n, i) => `${n} ${hx(m.cpu.regs[10 + i])}`), ...shifts.map((n, i) => `${n} ${hx(m.cpu.regs[20 + i])}`)];
        const want = [...arith.map((n) => `${n} ${hx(I_MODEL[n](a, imm))}`), ...shifts.map((n) => `${n} ${hx(I_MODEL[n](a, s))}`)];
        expect(got).toEqual(want);
      }),
      { numRuns: 1500 },
    );
  });
});

// ───────────────────────── log-dirty tracking ─────────────────────────

describe("every store marks exactly its page(s) dirty", () => {
  const rows = [
    { op: "sb", addr: 0x3000, pages: [3] },
    { op: "sb", addr: 0x3fff, pages: [3] },
    { op: "sh", addr: 0x3ffe, pages: [3] },
    { op: "sh", addr: 0x3fff, pages: [3, 4] },
    { op: "sw", addr: 0x3ffc, pages: [3] },
    { op: "sw", addr: 0x3ffd, pages: [3, 4] },
    { op: "sw", addr: 0x3fff, pages: [3, 4] },
    { op: "sw", addr: 0x4000, pages: [4] },
    { op: "sw", addr: 0x0ffe, pages: [0, 1] }, // straddles from the code page
    { op: "sh", addr: SIZE - 2, pages: [PAGES - 1] },
  ];
  // `pre`: a byte store first dirties the store's first or last page (or none), so the
  // store itself meets one page already dirty (the fast path) and one still clean.
  const table = rows.flatMap((r) => (["none", "first", "last"] as const).map((pre) => ({ ...r, pre })));
  it.each(table)("$op at $addr → pages $pages (pre-dirtied page: $pre)", ({ op, addr, pages, pre }) => {
    const width = STORE_WIDTH[op as StoreName];
    const preAddr = pre === "first" ? addr : pre === "last" ? addr + width - 1 : 0x700;
    const code = [enc.lbu(5, 1, 0), enc[op as StoreName](2, 1, 0), enc[op as StoreName](2, 1, 0), EBREAK];
    if (pre !== "none") code.unshift(enc.sb(0, 3, 0));
    const m = exec(code, { regs: { 1: addr, 2: -1, 3: preAddr } });
    expectBreak(m);
    expect([...m.memory.dirtyPages()]).toEqual(pages);
    expect(m.memory.dirtyPageCount).toBe(pages.length); // the second store adds nothing
    for (let p = 0; p < PAGES; p++) expect(m.memory.isDirty(p), `page ${p}`).toBe(pages.includes(p));
  });

  it("running code, loading and branching dirty nothing", () => {
    const m = exec([enc.lw(5, 0, 0x100), enc.lb(6, 0, 0x700), enc.beq(0, 0, 8), NOP, EBREAK]);
    expectBreak(m);
    expect(m.memory.dirtyPageCount).toBe(0);
  });

  it("clearing the dirty set starts a new epoch in which stores mark pages again", () => {
    // Store to pages 0 and 5; ebreak; then (after resume) to pages 5 and 7.
    const m = exec([enc.sw(0, 0, 0x7fc), enc.sb(0, 1, 0), EBREAK, enc.sh(0, 1, 0), enc.sw(0, 2, 0), EBREAK], {
      regs: { 1: 0x5000, 2: 0x7000 },
    });
    expectBreak(m);
    expect([...m.memory.dirtyPages()]).toEqual([0, 5]);
    m.memory.clearDirty();
    expect([...m.memory.dirtyPages()]).toEqual([]);
    expect(m.memory.dirtyPageCount).toBe(0);
    expect(m.memory.isDirty(0)).toBe(false);
    expect(m.memory.isDirty(5)).toBe(false);
    m.resume();
    m.run(100);
    expectBreak(m);
    expect([...m.memory.dirtyPages()]).toEqual([5, 7]);
    m.memory.clearDirty();
    expect(m.memory.dirtyPageCount).toBe(0);
  });

  it("a store to a page in the middle of a many-store program is listed once, pages sorted", () => {
    // Stores to pages 9, 3, 9, 12, 3 → [3, 9, 12].
    const addrs = [0x9000, 0x3004, 0x9ffc, 0xc000, 0x3ff0];
    const m = exec([...addrs.map((a, i) => enc.sw(0, 10 + i, 0)), EBREAK], {
      regs: Object.fromEntries(addrs.map((a, i) => [10 + i, a])),
    });
    expectBreak(m);
    expect([...m.memory.dirtyPages()]).toEqual([3, 9, 12]);
  });
});

// ───────────────────────── self-modifying code ─────────────────────────

describe("self-modifying code", () => {
  it("a word store over an instruction that already ran makes the new one run", () => {
    //  0: addi x5, x5, 1      ← later replaced by addi x5, x5, 100
    //  4: bne  x6, x0, +16    → 20 on the second pass
    //  8: addi x6, x0, 1
    // 12: sw   x7, 0(x0)
    // 16: jal  x0, -16        → 0
    // 20: ebreak
    const m = exec(
      [enc.addi(5, 5, 1), enc.bne(6, 0, 16), enc.addi(6, 0, 1), enc.sw(7, 0, 0), enc.jal(0, -16), EBREAK],
      { regs: { 7: enc.addi(5, 5, 100) } },
    );
    expectBreak(m);
    expect(x(m, 5)).toBe(101);
    expect(m.memory.isDirty(0)).toBe(true);
  });

  it("a byte store into the middle of an executed instruction changes it", () => {
    // addi x5, x5, 1 has imm[11:4] in its top byte; 0x06 there makes the immediate 0x61.
    const m = exec(
      [enc.addi(5, 5, 1), enc.bne(6, 0, 16), enc.addi(6, 0, 1), enc.sb(7, 0, 3), enc.jal(0, -16), EBREAK],
      { regs: { 7: 0x06 } },
    );
    expectBreak(m);
    expect(x(m, 5)).toBe(1 + 0x61);
  });

  it("a misaligned store across two executed instructions changes both", () => {
    //  0: addi x5, x5, 1
    //  4: addi x6, x6, 1
    //  8: bne  x7, x0, +20 → 28
    // 12: addi x7, x0, 1
    // 16: sw   x8, 2(x0)   ← top half of 0 and bottom half of 4
    // 20: jal  x0, -20
    // 24: (never)  28: ebreak
    const first = enc.addi(5, 5, 1);
    const second = enc.addi(6, 6, 1);
    const newFirst = enc.addi(5, 5, 0x10); // same low half as `first`
    const newSecond = enc.xori(6, 6, 1); // differs from `second` in the low half (funct3)
    expect(newFirst & 0xffff).toBe(first & 0xffff);
    expect(newSecond >>> 16).toBe(second >>> 16);
    const patch = ((newSecond & 0xffff) << 16) | (newFirst >>> 16);
    const m = exec([first, second, enc.bne(7, 0, 20), enc.addi(7, 0, 1), enc.sw(8, 0, 2), enc.jal(0, -20), 0, EBREAK], {
      regs: { 8: patch },
    });
    expectBreak(m);
    expect(x(m, 5)).toBe(1 + 0x10);
    expect(x(m, 6)).toBe(1 ^ 1); // addi → 1, then xori 1 → 0
  });

  it("a store over the next instruction takes effect when that instruction first runs", () => {
    const m = exec([enc.sw(7, 0, 4), enc.addi(5, 0, 1), EBREAK], { regs: { 7: enc.addi(5, 0, 42) } });
    expectBreak(m);
    expect(x(m, 5)).toBe(42);
  });

  it("code on another page, rewritten after it ran, runs anew when called again", () => {
    // A subroutine at 0x6000 returns a constant; the caller patches it between two calls.
    const m = exec(
      [enc.jalr(1, 9, 0), enc.add(20, 10, 0), enc.sw(7, 9, 0), enc.jalr(1, 9, 0), enc.add(21, 10, 0), EBREAK],
      { regs: { 9: 0x6000, 7: enc.addi(10, 0, 2) }, data: [[0x6000, le(enc.addi(10, 0, 1), enc.jalr(0, 1, 0))]] },
    );
    expectBreak(m);
    expect([x(m, 20), x(m, 21)]).toEqual([1, 2]);
    expect([...m.memory.dirtyPages()]).toEqual([6]);
  });

  it("after clearing the dirty set, a code page store still invalidates and is dirty again", () => {
    const m = boot([enc.addi(5, 5, 1), EBREAK, enc.sw(7, 0, 0), enc.jal(0, -12)], { regs: { 7: enc.addi(5, 5, 10) } });
    m.run(100);
    expectBreak(m);
    expect(x(m, 5)).toBe(1);
    m.memory.clearDirty();
    m.resume();
    m.run(100); // sw, jal back to 0, the patched addi, ebreak
    expectBreak(m);
    expect(x(m, 5)).toBe(11);
    expect([...m.memory.dirtyPages()]).toEqual([0]);
  });
});
