/**
 * The RV32IM hart: a pre-decoding interpreter.
 *
 * Each instruction is decoded once, the first time it executes, into two Int32
 * in its page's code cache (memory.ts): a packed word (op | rd<<8 | rs1<<14 |
 * rs2<<19) and the immediate. The loop then dispatches on a small dense op
 * number. A store into a page with decoded code clears the decoded words it
 * overlaps (memory.ts), so self-modifying code and loaders stay correct.
 *
 * Writes to x0 are decoded as writes to a sink register (index 32), which
 * keeps "x0 is zero" out of the loop entirely.
 */
import { FLAG_CLEAN, type Memory } from "./memory.ts";

export const enum Op {
  UNDECODED = 0,
  LI, // lui, and auipc (pc is known at decode time)
  JAL, JALR,
  BEQ, BNE, BLT, BGE, BLTU, BGEU,
  LB, LH, LW, LBU, LHU,
  SB, SH, SW,
  ADDI, SLTI, SLTIU, XORI, ORI, ANDI, SLLI, SRLI, SRAI,
  ADD, SUB, SLL, SLT, SLTU, XOR, SRL, SRA, OR, AND,
  MUL, MULH, MULHSU, MULHU, DIV, DIVU, REM, REMU,
  FENCE, ECALL, EBREAK, CSR,
  /** A jump or branch whose offset is not a multiple of 4: faults if taken. */
  BRANCH_MISALIGNED, JAL_MISALIGNED,
  ILLEGAL,
}

/** Why `run` returned. */
export const enum Exit {
  BUDGET = 0,
  ECALL = 1,
  EBREAK = 2,
  FAULT = 3,
}

export interface Fault {
  reason: string;
  pc: number;
}

/** Sources of the counters a guest may read with rdcycle/rdtime/rdinstret. */
export interface CsrSource {
  now(): number;
}

const SINK = 32;

export class Cpu {
  /** x0..x31, plus the sink at index 32 that absorbs writes to x0. */
  readonly regs = new Int32Array(33);
  pc = 0;
  /** Instructions retired since reset. */
  instret = 0;
  fault: Fault | null = null;

  constructor(
    readonly memory: Memory,
    private readonly csr: CsrSource = { now: () => Date.now() },
  ) {}

  /**
   * Run at most `budget` instructions. Returns why it stopped; on ECALL and
   * EBREAK `pc` still points at that instruction (the machine decides where
   * to go on); on FAULT `fault` says why.
   */
  run(budget: number): Exit {
    const regs = this.regs;
    const mem = this.memory;
    const dv = mem.view;
    const flags = mem.storeFlags;
    const size = mem.size;
    let pc = this.pc >>> 0;
    let n = 0;
    let page = -1;
    let cache: Int32Array = EMPTY_CACHE;
    let exit = Exit.BUDGET;

    loop: while (n < budget) {
      if (pc >>> 12 !== page) {
        if (pc >= size) {
          this.fault = { reason: `instruction fetch outside memory at 0x${hex(pc)}`, pc };
          exit = Exit.FAULT;
          break;
        }
        page = pc >>> 12;
        cache = mem.codePage(page);
      }
      const slot = (pc & 0xffc) >>> 1;
      let w = cache[slot];
      if (w === 0) w = decodeInto(cache, slot, dv.getInt32(pc, true), pc);
      const imm = cache[slot + 1];
      const rd = (w >>> 8) & 63;
      const rs1 = (w >>> 14) & 31;
      const rs2 = (w >>> 19) & 31;
      n++;
      switch (w & 255) {
        case Op.LI: regs[rd] = imm; pc += 4; break;
        case Op.JAL: regs[rd] = pc + 4; pc = (pc + imm) >>> 0; break;
        case Op.JALR: {
          const t = (regs[rs1] + imm) & ~1;
          if (t & 3) { exit = this.crash(`misaligned jump target 0x${hex(t)}`, pc); n--; break loop; }
          regs[rd] = pc + 4;
          pc = t >>> 0;
          break;
        }
        case Op.BEQ: pc = regs[rs1] === regs[rs2] ? (pc + imm) >>> 0 : pc + 4; break;
        case Op.BNE: pc = regs[rs1] !== regs[rs2] ? (pc + imm) >>> 0 : pc + 4; break;
        case Op.BLT: pc = regs[rs1] < regs[rs2] ? (pc + imm) >>> 0 : pc + 4; break;
        case Op.BGE: pc = regs[rs1] >= regs[rs2] ? (pc + imm) >>> 0 : pc + 4; break;
        case Op.BLTU: pc = regs[rs1] >>> 0 < regs[rs2] >>> 0 ? (pc + imm) >>> 0 : pc + 4; break;
        case Op.BGEU: pc = regs[rs1] >>> 0 >= regs[rs2] >>> 0 ? (pc + imm) >>> 0 : pc + 4; break;
        case Op.LB: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a >= size) { exit = this.accessFault("load", a, pc); n--; break loop; }
          regs[rd] = dv.getInt8(a); pc += 4; break;
        }
        case Op.LBU: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a >= size) { exit = this.accessFault("load", a, pc); n--; break loop; }
          regs[rd] = dv.getUint8(a); pc += 4; break;
        }
        case Op.LH: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a > size - 2) { exit = this.accessFault("load", a, pc); n--; break loop; }
          regs[rd] = dv.getInt16(a, true); pc += 4; break;
        }
        case Op.LHU: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a > size - 2) { exit = this.accessFault("load", a, pc); n--; break loop; }
          regs[rd] = dv.getUint16(a, true); pc += 4; break;
        }
        case Op.LW: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a > size - 4) { exit = this.accessFault("load", a, pc); n--; break loop; }
          regs[rd] = dv.getInt32(a, true); pc += 4; break;
        }
        // A store's slow path may find memory braking (copies kept for checkpoints in
        // flight reached their limit: memory.ts): the run ends after that store.
        case Op.SB: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a >= size) { exit = this.accessFault("store", a, pc); n--; break loop; }
          if (flags[a >>> 12] !== 0) { mem.touch(a, 1); if (mem.braking) { dv.setInt8(a, regs[rs2]); pc += 4; break loop; } }
          dv.setInt8(a, regs[rs2]); pc += 4; break;
        }
        case Op.SH: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a > size - 2) { exit = this.accessFault("store", a, pc); n--; break loop; }
          if ((flags[a >>> 12] | flags[(a + 1) >>> 12]) !== 0) { mem.touch(a, 2); if (mem.braking) { dv.setInt16(a, regs[rs2], true); pc += 4; break loop; } }
          dv.setInt16(a, regs[rs2], true); pc += 4; break;
        }
        case Op.SW: {
          const a = (regs[rs1] + imm) >>> 0;
          if (a > size - 4) { exit = this.accessFault("store", a, pc); n--; break loop; }
          if ((flags[a >>> 12] | flags[(a + 3) >>> 12]) !== 0) { mem.touch(a, 4); if (mem.braking) { dv.setInt32(a, regs[rs2], true); pc += 4; break loop; } }
          dv.setInt32(a, regs[rs2], true); pc += 4; break;
        }
        case Op.ADDI: regs[rd] = regs[rs1] + imm; pc += 4; break;
        case Op.SLTI: regs[rd] = regs[rs1] < imm ? 1 : 0; pc += 4; break;
        case Op.SLTIU: regs[rd] = regs[rs1] >>> 0 < imm >>> 0 ? 1 : 0; pc += 4; break;
        case Op.XORI: regs[rd] = regs[rs1] ^ imm; pc += 4; break;
        case Op.ORI: regs[rd] = regs[rs1] | imm; pc += 4; break;
        case Op.ANDI: regs[rd] = regs[rs1] & imm; pc += 4; break;
        case Op.SLLI: regs[rd] = regs[rs1] << imm; pc += 4; break;
        case Op.SRLI: regs[rd] = regs[rs1] >>> imm; pc += 4; break;
        case Op.SRAI: regs[rd] = regs[rs1] >> imm; pc += 4; break;
        case Op.ADD: regs[rd] = regs[rs1] + regs[rs2]; pc += 4; break;
        case Op.SUB: regs[rd] = regs[rs1] - regs[rs2]; pc += 4; break;
        // JS shift operators use only the low 5 bits of the count, as RV32 does.
        case Op.SLL: regs[rd] = regs[rs1] << regs[rs2]; pc += 4; break;
        case Op.SLT: regs[rd] = regs[rs1] < regs[rs2] ? 1 : 0; pc += 4; break;
        case Op.SLTU: regs[rd] = regs[rs1] >>> 0 < regs[rs2] >>> 0 ? 1 : 0; pc += 4; break;
        case Op.XOR: regs[rd] = regs[rs1] ^ regs[rs2]; pc += 4; break;
        case Op.SRL: regs[rd] = regs[rs1] >>> regs[rs2]; pc += 4; break;
        case Op.SRA: regs[rd] = regs[rs1] >> regs[rs2]; pc += 4; break;
        case Op.OR: regs[rd] = regs[rs1] | regs[rs2]; pc += 4; break;
        case Op.AND: regs[rd] = regs[rs1] & regs[rs2]; pc += 4; break;
        case Op.MUL: regs[rd] = Math.imul(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.MULH: regs[rd] = mulh(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.MULHSU: regs[rd] = mulhsu(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.MULHU: regs[rd] = mulhu(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.DIV: regs[rd] = div(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.DIVU: regs[rd] = divu(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.REM: regs[rd] = rem(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.REMU: regs[rd] = remu(regs[rs1], regs[rs2]); pc += 4; break;
        case Op.FENCE: pc += 4; break;
        case Op.ECALL: exit = Exit.ECALL; break loop;
        case Op.EBREAK: exit = Exit.EBREAK; break loop;
        case Op.CSR: regs[rd] = this.readCsr(imm, n); pc += 4; break;
        case Op.BRANCH_MISALIGNED: {
          if (branchTaken(w >>> 24, regs[rs1], regs[rs2])) {
            exit = this.crash(`misaligned branch target 0x${hex((pc + imm) >>> 0)}`, pc); n--; break loop;
          }
          pc += 4; break;
        }
        case Op.JAL_MISALIGNED:
          exit = this.crash(`misaligned jump target 0x${hex((pc + imm) >>> 0)}`, pc); n--; break loop;
        default:
          exit = this.crash(`illegal instruction 0x${hex(dv.getUint32(pc, true))}`, pc); n--; break loop;
      }
    }
    this.pc = pc >>> 0;
    this.instret += n;
    return exit;
  }

  private crash(reason: string, pc: number): Exit {
    this.fault = { reason, pc };
    return Exit.FAULT;
  }

  private accessFault(kind: "load" | "store", addr: number, pc: number): Exit {
    return this.crash(`${kind} outside memory at 0x${hex(addr)}`, pc);
  }

  /** Zicsr reads of the unprivileged counters; `n` = instructions retired so far in this run. */
  private readCsr(csr: number, n: number): number {
    const instret = this.instret + n - 1;
    switch (csr) {
      case 0xc00: case 0xc02: return instret | 0;
      case 0xc80: case 0xc82: return Math.floor(instret / 0x100000000) | 0;
      case 0xc01: return this.csr.now() | 0;
      case 0xc81: return Math.floor(this.csr.now() / 0x100000000) | 0;
      default: return 0;
    }
  }

  /**
   * Put the hart in its reset state: every register 0 but `sp`, `pc` = `entry`,
   * no instructions retired, no fault. Decoded instructions live in memory's
   * code cache and are left alone (a store invalidates them, see memory.ts).
   */
  reset(entry: number, sp: number): void {
    this.regs.fill(0);
    this.regs[2] = sp | 0;
    this.pc = entry >>> 0;
    this.instret = 0;
    this.fault = null;
  }
}

const EMPTY_CACHE = new Int32Array(0);

function hex(v: number): string {
  return (v >>> 0).toString(16).padStart(8, "0");
}

function branchTaken(funct3: number, a: number, b: number): boolean {
  switch (funct3) {
    case 0: return a === b;
    case 1: return a !== b;
    case 4: return a < b;
    case 5: return a >= b;
    case 6: return a >>> 0 < b >>> 0;
    default: return a >>> 0 >= b >>> 0;
  }
}

// ---- M extension: the corner cases are the spec's, not JavaScript's. ----

export function mulhu(a: number, b: number): number {
  const aL = a & 0xffff, aH = a >>> 16, bL = b & 0xffff, bH = b >>> 16;
  const ll = aL * bL, lh = aL * bH, hl = aH * bL, hh = aH * bH;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) | 0;
}

/** Signed × signed: the unsigned high word, corrected for each negative operand. */
export function mulh(a: number, b: number): number {
  return (mulhu(a, b) - (a < 0 ? b : 0) - (b < 0 ? a : 0)) | 0;
}

export function mulhsu(a: number, b: number): number {
  return (mulhu(a, b) - (a < 0 ? b : 0)) | 0;
}

export function div(a: number, b: number): number {
  if (b === 0) return -1;
  if (a === -0x80000000 && b === -1) return a;
  return (a / b) | 0;
}

export function divu(a: number, b: number): number {
  if (b === 0) return -1;
  return ((a >>> 0) / (b >>> 0)) | 0;
}

export function rem(a: number, b: number): number {
  if (b === 0) return a;
  if (a === -0x80000000 && b === -1) return 0;
  return a % b | 0;
}

export function remu(a: number, b: number): number {
  if (b === 0) return a;
  return ((a >>> 0) % (b >>> 0)) | 0;
}

// ---- Decoder ----

function pack(op: Op, rd: number, rs1: number, rs2: number, extra = 0): number {
  return op | ((rd === 0 ? SINK : rd) << 8) | (rs1 << 14) | (rs2 << 19) | (extra << 24);
}

/** Decode `word` found at `pc` into cache[slot], cache[slot+1]; returns the packed word. */
export function decodeInto(cache: Int32Array, slot: number, word: number, pc: number): number {
  const [packed, imm] = decode(word, pc);
  cache[slot] = packed;
  cache[slot + 1] = imm;
  return packed;
}

const ILLEGAL: [number, number] = [Op.ILLEGAL, 0];

/** Decode one instruction word: [packed, immediate]. Never returns packed 0. */
export function decode(word: number, pc: number): [number, number] {
  const opcode = word & 0x7f;
  const rd = (word >>> 7) & 31;
  const f3 = (word >>> 12) & 7;
  const rs1 = (word >>> 15) & 31;
  const rs2 = (word >>> 20) & 31;
  const f7 = word >>> 25;
  const immI = word >> 20;
  switch (opcode) {
    case 0x37: return [pack(Op.LI, rd, 0, 0), word & 0xfffff000];
    case 0x17: return [pack(Op.LI, rd, 0, 0), (pc + (word & 0xfffff000)) | 0];
    case 0x6f: {
      const imm = (((word >> 31) << 20) | (((word >>> 12) & 0xff) << 12) | (((word >>> 20) & 1) << 11) | (((word >>> 21) & 0x3ff) << 1));
      return [pack(imm & 3 ? Op.JAL_MISALIGNED : Op.JAL, rd, 0, 0), imm];
    }
    case 0x67: return f3 === 0 ? [pack(Op.JALR, rd, rs1, 0), immI] : ILLEGAL;
    case 0x63: {
      const imm = (((word >> 31) << 12) | (((word >>> 7) & 1) << 11) | (((word >>> 25) & 0x3f) << 5) | (((word >>> 8) & 0xf) << 1));
      const op = [Op.BEQ, Op.BNE, 0, 0, Op.BLT, Op.BGE, Op.BLTU, Op.BGEU][f3];
      if (op === 0) return ILLEGAL;
      // rd is unused by branches; keep it 0 so the sink never matters.
      if (imm & 3) return [Op.BRANCH_MISALIGNED | (rs1 << 14) | (rs2 << 19) | (f3 << 24), imm];
      return [op | (rs1 << 14) | (rs2 << 19), imm];
    }
    case 0x03: {
      const op = [Op.LB, Op.LH, Op.LW, 0, Op.LBU, Op.LHU, 0, 0][f3];
      return op === 0 ? ILLEGAL : [pack(op, rd, rs1, 0), immI];
    }
    case 0x23: {
      const op = [Op.SB, Op.SH, Op.SW, 0, 0, 0, 0, 0][f3];
      const imm = ((word >> 25) << 5) | ((word >>> 7) & 31);
      return op === 0 ? ILLEGAL : [op | (rs1 << 14) | (rs2 << 19), imm];
    }
    case 0x13: {
      switch (f3) {
        case 0: return [pack(Op.ADDI, rd, rs1, 0), immI];
        case 2: return [pack(Op.SLTI, rd, rs1, 0), immI];
        case 3: return [pack(Op.SLTIU, rd, rs1, 0), immI];
        case 4: return [pack(Op.XORI, rd, rs1, 0), immI];
        case 6: return [pack(Op.ORI, rd, rs1, 0), immI];
        case 7: return [pack(Op.ANDI, rd, rs1, 0), immI];
        case 1: return f7 === 0 ? [pack(Op.SLLI, rd, rs1, 0), rs2] : ILLEGAL;
        default: // 5
          if (f7 === 0) return [pack(Op.SRLI, rd, rs1, 0), rs2];
          if (f7 === 0x20) return [pack(Op.SRAI, rd, rs1, 0), rs2];
          return ILLEGAL;
      }
    }
    case 0x33: {
      let op: Op | 0 = 0;
      if (f7 === 0) op = [Op.ADD, Op.SLL, Op.SLT, Op.SLTU, Op.XOR, Op.SRL, Op.OR, Op.AND][f3];
      else if (f7 === 0x20) op = f3 === 0 ? Op.SUB : f3 === 5 ? Op.SRA : 0;
      else if (f7 === 1) op = [Op.MUL, Op.MULH, Op.MULHSU, Op.MULHU, Op.DIV, Op.DIVU, Op.REM, Op.REMU][f3];
      return op === 0 ? ILLEGAL : [pack(op, rd, rs1, rs2), 0];
    }
    case 0x0f: return f3 === 0 || f3 === 1 ? [pack(Op.FENCE, 0, 0, 0), 0] : ILLEGAL; // fence, fence.i
    case 0x73: {
      if (word === 0x00000073) return [pack(Op.ECALL, 0, 0, 0), 0];
      if (word === 0x00100073) return [pack(Op.EBREAK, 0, 0, 0), 0];
      // Only reads of the user counters: csrrs rd, csr, x0 (rdcycle & co.).
      const csr = word >>> 20;
      if (f3 === 2 && rs1 === 0 && ((csr >= 0xc00 && csr <= 0xc02) || (csr >= 0xc80 && csr <= 0xc82))) {
        return [pack(Op.CSR, rd, 0, 0), csr];
      }
      return ILLEGAL;
    }
    default:
      return ILLEGAL;
  }
}

// FLAG_CLEAN is re-exported for tests that inspect the store path.
export { FLAG_CLEAN };
