/**
 * RV32IM instruction encoders: pure functions from operands to 32-bit instruction words.
 *
 * Used by the assembler (./assembler.ts) and by CPU tests that need to build instructions.
 * Every function returns an UNSIGNED 32-bit number (`>>> 0`) and throws a RangeError,
 * naming the field and its range, for any register or immediate out of range.
 *
 * Two layers:
 *
 * 1. Format encoders, taking raw numeric fields exactly as in the RISC-V unprivileged
 *    spec ("Base Instruction Formats"):
 *      encR(opcode, rd, funct3, rs1, rs2, funct7)
 *      encI(opcode, rd, funct3, rs1, imm)      imm: -2048..2047
 *      encS(opcode, funct3, rs1, rs2, imm)     imm: -2048..2047
 *      encB(opcode, funct3, rs1, rs2, imm)     imm: even, -4096..4094 (pc-relative)
 *      encU(opcode, rd, imm20)                 imm20: 0..0xFFFFF (the value `lui` takes)
 *      encJ(opcode, rd, imm)                   imm: even, -1048576..1048574 (pc-relative)
 *
 * 2. One encoder per mnemonic in `enc`, operands in ASSEMBLY ORDER, where a memory operand
 *    `offset(rs1)` is passed as the two arguments `rs1, offset`. Registers are numbers 0..31
 *    or names ("x5", "t0", "zero", "fp", ...; case-insensitive).
 *
 *      enc.add(rd, rs1, rs2)   … and sub sll slt sltu xor srl sra or and mul mulh mulhsu
 *                              mulhu div divu rem remu
 *      enc.addi(rd, rs1, imm)  … and slti sltiu xori ori andi            (imm -2048..2047)
 *      enc.slli(rd, rs1, shamt) … and srli srai                          (shamt 0..31)
 *      enc.lw(rd, rs1, offset)  … and lb lh lbu lhu       ≙ `lw rd, offset(rs1)`
 *      enc.sw(rs2, rs1, offset) … and sb sh               ≙ `sw rs2, offset(rs1)`
 *      enc.beq(rs1, rs2, offset) … and bne blt bge bltu bgeu  (offset relative to the branch)
 *      enc.lui(rd, imm20), enc.auipc(rd, imm20)
 *      enc.jal(rd, offset)                                (offset relative to the jal)
 *      enc.jalr(rd, rs1, offset)                          ≙ `jalr rd, offset(rs1)`
 *      enc.fence(pred = 0b1111, succ = 0b1111)            bits: i=8 o=4 r=2 w=1
 *      enc.ecall(), enc.ebreak()
 *      enc.csrrs(rd, csr, rs1 = 0)                        (rdcycle rd = csrrs rd, 0xC00, x0)
 *
 *    `encode("addi", "a0", "a0", 1)` does the same by name (RangeError for an unknown name or
 *    a wrong operand count).
 *
 * Examples (checked in test/assembler.test.ts):
 *   enc.addi("a0", "a0", 1)       === 0x00150513
 *   enc.sw("a1", "sp", 8)         === 0x00b12423   // sw a1, 8(sp)
 *   encode("mul", "a0", "a1", "a2") === 0x02c58533
 *
 * `hi20(v)` / `lo12(v)` split a 32-bit value for `lui`+`addi` (or `auipc`+`addi`):
 * (hi20(v) << 12) + lo12(v) === v (mod 2^32), with lo12 sign-extended.
 */

/** Major opcodes (bits 6..0). */
export const OPCODE = {
  LOAD: 0x03,
  MISC_MEM: 0x0f,
  OP_IMM: 0x13,
  AUIPC: 0x17,
  STORE: 0x23,
  OP: 0x33,
  LUI: 0x37,
  BRANCH: 0x63,
  JALR: 0x67,
  JAL: 0x6f,
  SYSTEM: 0x73,
} as const;

/** `addi x0, x0, 0`. */
export const NOP = 0x00000013;

/** CSR numbers of the read-only counters (Zicntr), as read by `rdcycle` etc. */
export const CSR = {
  cycle: 0xc00,
  time: 0xc01,
  instret: 0xc02,
  cycleh: 0xc80,
  timeh: 0xc81,
  instreth: 0xc82,
} as const;

// ─────────────────────────────── registers ───────────────────────────────

/** A register: its number 0..31, or a name such as "x10", "a0", "zero", "fp". */
export type RegArg = number | string;

/** ABI names by register number (x8 is "s0", also known as "fp"). */
export const ABI_NAMES: readonly string[] = Object.freeze([
  "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2",
  "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
  "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7",
  "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
]);

const REG_BY_NAME: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  ABI_NAMES.forEach((name, i) => m.set(name, i));
  m.set("fp", 8);
  for (let i = 0; i < 32; i++) m.set(`x${i}`, i);
  return m;
})();

/** The number of a register name (case-insensitive), or undefined if it is not one. */
export function regNumber(name: string): number | undefined {
  return REG_BY_NAME.get(name.toLowerCase());
}

/** A register argument as a number 0..31; RangeError otherwise. */
export function reg(r: RegArg): number {
  if (typeof r === "string") {
    const n = regNumber(r);
    if (n === undefined) throw new RangeError(`unknown register ${JSON.stringify(r)}`);
    return n;
  }
  return check("register", r, 0, 31);
}

// ─────────────────────────────── field checks ───────────────────────────────

function check(what: string, v: unknown, lo: number, hi: number, even = false): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi || (even && v % 2 !== 0)) {
    const kind = even ? "an even integer" : "an integer";
    throw new RangeError(`${what} must be ${kind} in ${lo}..${hi}, got ${String(v)}`);
  }
  return v;
}

function fields(opcode: number, rd: number, funct3: number, rs1: number, rs2: number): void {
  check("opcode", opcode, 0, 0x7f);
  check("rd", rd, 0, 31);
  check("funct3", funct3, 0, 7);
  check("rs1", rs1, 0, 31);
  check("rs2", rs2, 0, 31);
}

// ─────────────────────────────── formats ───────────────────────────────

export function encR(opcode: number, rd: number, funct3: number, rs1: number, rs2: number, funct7: number): number {
  fields(opcode, rd, funct3, rs1, rs2);
  check("funct7", funct7, 0, 0x7f);
  return ((funct7 << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode) >>> 0;
}

export function encI(opcode: number, rd: number, funct3: number, rs1: number, imm: number): number {
  fields(opcode, rd, funct3, rs1, 0);
  check("I-type immediate", imm, -2048, 2047);
  return (((imm & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode) >>> 0;
}

export function encS(opcode: number, funct3: number, rs1: number, rs2: number, imm: number): number {
  fields(opcode, 0, funct3, rs1, rs2);
  check("S-type immediate", imm, -2048, 2047);
  return (
    ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | ((imm & 0x1f) << 7) | opcode) >>> 0
  );
}

export function encB(opcode: number, funct3: number, rs1: number, rs2: number, imm: number): number {
  fields(opcode, 0, funct3, rs1, rs2);
  check("branch offset", imm, -4096, 4094, true);
  return (
    ((((imm >> 12) & 1) << 31) |
      (((imm >> 5) & 0x3f) << 25) |
      (rs2 << 20) |
      (rs1 << 15) |
      (funct3 << 12) |
      (((imm >> 1) & 0xf) << 8) |
      (((imm >> 11) & 1) << 7) |
      opcode) >>>
    0
  );
}

export function encU(opcode: number, rd: number, imm20: number): number {
  fields(opcode, rd, 0, 0, 0);
  check("U-type immediate", imm20, 0, 0xfffff);
  return ((imm20 << 12) | (rd << 7) | opcode) >>> 0;
}

export function encJ(opcode: number, rd: number, imm: number): number {
  fields(opcode, rd, 0, 0, 0);
  check("jump offset", imm, -1048576, 1048574, true);
  return (
    ((((imm >> 20) & 1) << 31) |
      (((imm >> 1) & 0x3ff) << 21) |
      (((imm >> 11) & 1) << 20) |
      (((imm >> 12) & 0xff) << 12) |
      (rd << 7) |
      opcode) >>>
    0
  );
}

// ─────────────────────────────── %hi / %lo ───────────────────────────────

/**
 * The upper 20 bits for `lui`/`auipc`, rounded so that adding the sign-extended `lo12(v)`
 * gives back v: the +0x800 compensates for a negative low part (bit 11 set).
 */
export function hi20(v: number): number {
  check("value", v, -0x80000000, 0xffffffff);
  return ((v + 0x800) >>> 12) & 0xfffff;
}

/** The low 12 bits of v, sign-extended (-2048..2047). */
export function lo12(v: number): number {
  check("value", v, -0x80000000, 0xffffffff);
  return ((v & 0xfff) ^ 0x800) - 0x800;
}

// ─────────────────────────────── per-mnemonic tables ───────────────────────────────

/** OP (register-register) instructions: [funct3, funct7]. */
export const R_TYPE = {
  add: [0, 0x00], sub: [0, 0x20], sll: [1, 0x00], slt: [2, 0x00], sltu: [3, 0x00],
  xor: [4, 0x00], srl: [5, 0x00], sra: [5, 0x20], or: [6, 0x00], and: [7, 0x00],
  mul: [0, 0x01], mulh: [1, 0x01], mulhsu: [2, 0x01], mulhu: [3, 0x01],
  div: [4, 0x01], divu: [5, 0x01], rem: [6, 0x01], remu: [7, 0x01],
} as const;

/** OP-IMM arithmetic with a 12-bit signed immediate: funct3. */
export const I_ARITH = { addi: 0, slti: 2, sltiu: 3, xori: 4, ori: 6, andi: 7 } as const;

/** OP-IMM shifts (shamt 0..31 in imm[4:0], funct7 in imm[11:5]): [funct3, funct7]. */
export const SHIFT_IMM = { slli: [1, 0x00], srli: [5, 0x00], srai: [5, 0x20] } as const;

/** Loads: funct3. */
export const LOADS = { lb: 0, lh: 1, lw: 2, lbu: 4, lhu: 5 } as const;

/** Stores: funct3. */
export const STORES = { sb: 0, sh: 1, sw: 2 } as const;

/** Conditional branches: funct3. */
export const BRANCHES = { beq: 0, bne: 1, blt: 4, bge: 5, bltu: 6, bgeu: 7 } as const;

type R3 = (rd: RegArg, rs1: RegArg, rs2: RegArg) => number;
type RRI = (a: RegArg, b: RegArg, imm: number) => number;

function mapTable<T extends object, F>(table: T, make: (v: T[keyof T]) => F): { [K in keyof T]: F } {
  const out = {} as { [K in keyof T]: F };
  for (const k of Object.keys(table) as (keyof T)[]) out[k] = make(table[k]);
  return out;
}

const O = OPCODE;

/** One encoder per RV32IM mnemonic (plus csrrs); see the header comment for operand orders. */
export const enc = {
  ...mapTable(R_TYPE, ([f3, f7]): R3 => (rd, rs1, rs2) => encR(O.OP, reg(rd), f3, reg(rs1), reg(rs2), f7)),
  ...mapTable(I_ARITH, (f3): RRI => (rd, rs1, imm) => encI(O.OP_IMM, reg(rd), f3, reg(rs1), imm)),
  ...mapTable(
    SHIFT_IMM,
    ([f3, f7]): RRI =>
      (rd, rs1, shamt) =>
        encI(O.OP_IMM, reg(rd), f3, reg(rs1), (f7 << 5) | check("shift amount", shamt, 0, 31)),
  ),
  ...mapTable(LOADS, (f3): RRI => (rd, rs1, offset) => encI(O.LOAD, reg(rd), f3, reg(rs1), offset)),
  ...mapTable(STORES, (f3): RRI => (rs2, rs1, offset) => encS(O.STORE, f3, reg(rs1), reg(rs2), offset)),
  ...mapTable(BRANCHES, (f3): RRI => (rs1, rs2, offset) => encB(O.BRANCH, f3, reg(rs1), reg(rs2), offset)),
  lui: (rd: RegArg, imm20: number): number => encU(O.LUI, reg(rd), imm20),
  auipc: (rd: RegArg, imm20: number): number => encU(O.AUIPC, reg(rd), imm20),
  jal: (rd: RegArg, offset: number): number => encJ(O.JAL, reg(rd), offset),
  jalr: (rd: RegArg, rs1: RegArg, offset: number): number => encI(O.JALR, reg(rd), 0, reg(rs1), offset),
  fence: (pred: number = 0b1111, succ: number = 0b1111): number =>
    encI(O.MISC_MEM, 0, 0, 0, (check("fence predecessor set", pred, 0, 15) << 4) | check("fence successor set", succ, 0, 15)),
  ecall: (): number => encI(O.SYSTEM, 0, 0, 0, 0),
  ebreak: (): number => encI(O.SYSTEM, 0, 0, 0, 1),
  csrrs: (rd: RegArg, csr: number, rs1: RegArg = 0): number => {
    // The 12-bit CSR number sits in the I-immediate field; encI wants it sign-extended.
    const c = check("CSR number", csr, 0, 0xfff);
    return encI(O.SYSTEM, reg(rd), 2, reg(rs1), c >= 0x800 ? c - 0x1000 : c);
  },
};

export type Mnemonic = keyof typeof enc;

/** Operand counts for the encoders whose trailing operands are optional. */
const ARITY: Partial<Record<Mnemonic, readonly [number, number]>> = { fence: [0, 2], csrrs: [2, 3] };

/**
 * Encode by mnemonic name: `encode("sw", "a1", "sp", 8)`. Operand order as in `enc`.
 * RangeError for an unknown mnemonic, a wrong operand count or an out-of-range operand.
 */
export function encode(mnemonic: string, ...operands: RegArg[]): number {
  const m = mnemonic.toLowerCase();
  if (!Object.hasOwn(enc, m)) throw new RangeError(`unknown mnemonic ${JSON.stringify(mnemonic)}`);
  const fn = enc[m as Mnemonic] as (...args: RegArg[]) => number;
  const [min, max] = ARITY[m as Mnemonic] ?? [fn.length, fn.length];
  if (operands.length < min || operands.length > max) {
    const want = min === max ? `${min}` : `${min}..${max}`;
    throw new RangeError(`${m} takes ${want} operands, got ${operands.length}`);
  }
  return fn(...operands);
}
