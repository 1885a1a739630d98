/**
 * The RV32IM hart: a pre-decoding interpreter that dispatches basic blocks.
 *
 * Each instruction is decoded once, into two Int32 in its page's code cache
 * (memory.ts): a packed word (op | rd<<8 | rs1<<14 | rs2<<19) and the
 * immediate. Decoding goes a basic block at a time (`decodeBlock`), and each
 * slot also records how many instructions run from it to its block's end (a
 * jump, a branch, a stop, or the page's end). The loop then works per block:
 * the page, the block and the budget are checked once at its start, and its
 * instructions run back to back, dispatched on a small dense op number. A
 * block that ends on the same page goes straight on to the next one when it
 * is decoded and fits in the budget (most loops never leave the inner loop).
 * Common pairs are fused into one dispatch (`fuse`).
 *
 * What is rare leaves the block to call out (`callOut`): a store to a page
 * with flags (not dirty yet, or holding decoded code), a misaligned load, a
 * counter read. Keeping calls out of the block's loop is what lets the
 * optimiser check the arrays it uses once per block rather than per
 * instruction. A store into a page with decoded code clears the decoded
 * words it overlaps and the block lengths that run into them (memory.ts), so
 * self-modifying code and loaders stay correct, within the running block too.
 *
 * No instruction is lost or gained by any of this: runs stop exactly at
 * their budget and at a faulting instruction (test/blocks.test.ts checks it
 * against fresh decoding, one instruction at a time).
 *
 * Writes to x0 are decoded as writes to a sink register (index 32), which
 * keeps "x0 is zero" out of the loop entirely.
 */
import { BLOCKS, FLAG_CLEAN, FLAG_CODE, type Memory } from "./memory.ts";

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
  /** Fused pairs (see `fuse`): an addi, then the conditional branch that ends its block (a counted loop's end). */
  ADDI_BNE, ADDI_BEQ,
  /** A shift left, then an add (indexing an array). */
  SLLI_ADD,
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
// The same as literals where the loop uses them: a module binding is read from its context at every use.
const enum Layout { SINK_AT = 32, BLOCKS_AT = 2048 }
if (BLOCKS !== (Layout.BLOCKS_AT as number)) throw new Error("cpu.ts and memory.ts disagree on the decoded cache's layout");

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
   *
   * The loop dispatches basic blocks: at a block's first instruction it
   * checks the page, the decoded block and the budget once, then runs the
   * block's instructions back to back (see the file's comment). The instruction count is
   * exact: a block that does not fit in what is left of the budget runs
   * only its first part, and an exit inside a block (a fault, a store that
   * finds memory braking) takes back what it did not run.
   */
  run(budget: number): Exit {
    const regs = this.regs;
    const mem = this.memory;
    const bytes = mem.bytes;
    const words = mem.words;
    const flags = mem.storeFlags;
    const view = mem.view;
    const size = mem.size;
    // A fractional budget would never meet a block's end exactly.
    if (!Number.isInteger(budget)) throw new RangeError(`a run's budget must be a whole number of instructions, got ${budget}`);
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
      const base = page << 12;
      const first = (pc - base) >>> 2;
      let len = cache[Layout.BLOCKS_AT + first];
      if (len === 0) len = decodeBlock(cache, first, view, base);
      const count = len < budget - n ? len : budget - n;
      // A use of the registers after the last call that could change them: the
      // optimiser then checks the array once here, not at every instruction.
      regs[Layout.SINK_AT] = 0;
      // Slot i's decoded words are cache[2i], cache[2i + 1]; its address is base + 4i = base + (j << 1) for j = 2i.
      let j = first << 1;
      let end = j + (count << 1);
      n += count;
      // Where the block falls through to; a jump or branch (always a block's last instruction) replaces it.
      pc = base + (end << 1);
      block: for (;;) {
        if (j === end) {
          // The block is done. The next one follows on here, without the checks above,
          // when it is on this page, decoded, and fits in the budget whole.
          const t = pc - base;
          if (t >>> 12 !== 0) break;
          len = cache[Layout.BLOCKS_AT + (t >>> 2)];
          if (len === 0 || len > budget - n) break;
          j = t >>> 1;
          end = j + (len << 1);
          n += len;
          pc = base + (end << 1);
        }
        const w = cache[j];
        const imm = cache[j + 1];
        const rd = (w >>> 8) & 63;
        const rs1 = (w >>> 14) & 31;
        const rs2 = (w >>> 19) & 31;
        switch (w & 255) {
          case Op.LI: regs[rd] = imm; break;
          case Op.JAL: regs[rd] = base + (j << 1) + 4; pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.JALR: {
            const t = (regs[rs1] + imm) & ~1;
            if (t & 3) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.crash(`misaligned jump target 0x${hex(t)}`, pc); break loop; }
            regs[rd] = base + (j << 1) + 4;
            pc = t >>> 0;
            break;
          }
          case Op.BEQ: if (regs[rs1] === regs[rs2]) pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.BNE: if (regs[rs1] !== regs[rs2]) pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.BLT: if (regs[rs1] < regs[rs2]) pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.BGE: if (regs[rs1] >= regs[rs2]) pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.BLTU: if (regs[rs1] >>> 0 < regs[rs2] >>> 0) pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.BGEU: if (regs[rs1] >>> 0 >= regs[rs2] >>> 0) pc = (base + (j << 1) + imm) >>> 0; break;
          case Op.LB: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a >= size) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("load", a, pc); break loop; }
            regs[rd] = (bytes[a] << 24) >> 24; break;
          }
          case Op.LBU: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a >= size) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("load", a, pc); break loop; }
            regs[rd] = bytes[a]; break;
          }
          case Op.LH: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a > size - 2) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("load", a, pc); break loop; }
            if ((a & 1) !== 0) break block;
            regs[rd] = (a & 2) === 0 ? (words[a >>> 2] << 16) >> 16 : words[a >>> 2] >> 16; break;
          }
          case Op.LHU: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a > size - 2) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("load", a, pc); break loop; }
            if ((a & 1) !== 0) break block;
            regs[rd] = (a & 2) === 0 ? words[a >>> 2] & 0xffff : words[a >>> 2] >>> 16; break;
          }
          case Op.LW: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a > size - 4) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("load", a, pc); break loop; }
            if ((a & 3) !== 0) break block;
            regs[rd] = words[a >>> 2]; break;
          }
          // A store to a page with flags (not dirty yet, or holding decoded code), or a
          // misaligned one, leaves the block to call out (`callOut`) — but for data beside
          // the block's own code: a page dirty already, a word with nothing decoded in it
          // (the slow path would do nothing; .data often shares a page with .text).
          case Op.SB: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a >= size) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("store", a, pc); break loop; }
            if (flags[a >>> 12] !== 0) {
              if (flags[a >>> 12] !== FLAG_CODE || a >>> 12 !== page || cache[(a & 0xffc) >>> 1] !== 0) break block;
            }
            bytes[a] = regs[rs2]; break;
          }
          case Op.SH: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a > size - 2) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("store", a, pc); break loop; }
            if (((a & 1) | flags[a >>> 12]) !== 0) {
              if ((a & 1) !== 0 || flags[a >>> 12] !== FLAG_CODE || a >>> 12 !== page || cache[(a & 0xffc) >>> 1] !== 0) break block;
            }
            bytes[a] = regs[rs2];
            bytes[a + 1] = regs[rs2] >> 8; break;
          }
          case Op.SW: {
            const a = (regs[rs1] + imm) >>> 0;
            if (a > size - 4) { pc = base + (j << 1); n -= (end - j) >> 1; exit = this.accessFault("store", a, pc); break loop; }
            if (((a & 3) | flags[a >>> 12]) !== 0) {
              if ((a & 3) !== 0 || flags[a >>> 12] !== FLAG_CODE || a >>> 12 !== page || cache[(a & 0xffc) >>> 1] !== 0) break block;
            }
            words[a >>> 2] = regs[rs2]; break;
          }
          case Op.ADDI: regs[rd] = regs[rs1] + imm; break;
          // A fused pair: the addi, then (unless the run ends between the two) the branch in the next slot.
          case Op.ADDI_BNE: {
            regs[rd] = regs[rs1] + imm;
            if (j + 2 === end) break;
            j += 2;
            const b = cache[j];
            if (regs[(b >>> 14) & 31] !== regs[(b >>> 19) & 31]) pc = (base + (j << 1) + cache[j + 1]) >>> 0;
            break;
          }
          case Op.SLLI_ADD: {
            regs[rd] = regs[rs1] << imm;
            if (j + 2 === end) break;
            j += 2;
            const b = cache[j];
            regs[(b >>> 8) & 63] = regs[(b >>> 14) & 31] + regs[(b >>> 19) & 31];
            break;
          }
          case Op.ADDI_BEQ: {
            regs[rd] = regs[rs1] + imm;
            if (j + 2 === end) break;
            j += 2;
            const b = cache[j];
            if (regs[(b >>> 14) & 31] === regs[(b >>> 19) & 31]) pc = (base + (j << 1) + cache[j + 1]) >>> 0;
            break;
          }
          case Op.SLTI: regs[rd] = regs[rs1] < imm ? 1 : 0; break;
          case Op.SLTIU: regs[rd] = regs[rs1] >>> 0 < imm >>> 0 ? 1 : 0; break;
          case Op.XORI: regs[rd] = regs[rs1] ^ imm; break;
          case Op.ORI: regs[rd] = regs[rs1] | imm; break;
          case Op.ANDI: regs[rd] = regs[rs1] & imm; break;
          case Op.SLLI: regs[rd] = regs[rs1] << imm; break;
          case Op.SRLI: regs[rd] = regs[rs1] >>> imm; break;
          case Op.SRAI: regs[rd] = regs[rs1] >> imm; break;
          case Op.ADD: regs[rd] = regs[rs1] + regs[rs2]; break;
          case Op.SUB: regs[rd] = regs[rs1] - regs[rs2]; break;
          // JS shift operators use only the low 5 bits of the count, as RV32 does.
          case Op.SLL: regs[rd] = regs[rs1] << regs[rs2]; break;
          case Op.SLT: regs[rd] = regs[rs1] < regs[rs2] ? 1 : 0; break;
          case Op.SLTU: regs[rd] = regs[rs1] >>> 0 < regs[rs2] >>> 0 ? 1 : 0; break;
          case Op.XOR: regs[rd] = regs[rs1] ^ regs[rs2]; break;
          case Op.SRL: regs[rd] = regs[rs1] >>> regs[rs2]; break;
          case Op.SRA: regs[rd] = regs[rs1] >> regs[rs2]; break;
          case Op.OR: regs[rd] = regs[rs1] | regs[rs2]; break;
          case Op.AND: regs[rd] = regs[rs1] & regs[rs2]; break;
          case Op.MUL: regs[rd] = Math.imul(regs[rs1], regs[rs2]); break;
          case Op.MULH: regs[rd] = mulh(regs[rs1], regs[rs2]); break;
          case Op.MULHSU: regs[rd] = mulhsu(regs[rs1], regs[rs2]); break;
          case Op.MULHU: regs[rd] = mulhu(regs[rs1], regs[rs2]); break;
          case Op.DIV: regs[rd] = div(regs[rs1], regs[rs2]); break;
          case Op.DIVU: regs[rd] = divu(regs[rs1], regs[rs2]); break;
          case Op.REM: regs[rd] = rem(regs[rs1], regs[rs2]); break;
          case Op.REMU: regs[rd] = remu(regs[rs1], regs[rs2]); break;
          case Op.FENCE: break;
          // ECALL and EBREAK end their block, so n already counts up to them.
          case Op.ECALL: pc = base + (j << 1); exit = Exit.ECALL; break loop;
          case Op.EBREAK: pc = base + (j << 1); exit = Exit.EBREAK; break loop;
          case Op.CSR: break block;
          case Op.BRANCH_MISALIGNED: {
            if (branchTaken(w >>> 24, regs[rs1], regs[rs2])) {
              pc = base + (j << 1); n -= (end - j) >> 1;
              exit = this.crash(`misaligned branch target 0x${hex((pc + imm) >>> 0)}`, pc); break loop;
            }
            break;
          }
          case Op.JAL_MISALIGNED:
            pc = base + (j << 1); n -= (end - j) >> 1;
            exit = this.crash(`misaligned jump target 0x${hex((pc + imm) >>> 0)}`, pc); break loop;
          case Op.UNDECODED:
            // Not reached as things are: a store over decoded code always leaves the block
            // (its page has flags), and the block's cleared length makes the loop above decode
            // it again. Kept so that a dropped word can never run as an illegal instruction.
            pc = base + (j << 1); n -= (end - j) >> 1;
            continue loop;
          default:
            pc = base + (j << 1); n -= (end - j) >> 1;
            exit = this.crash(`illegal instruction 0x${hex(view.getUint32(pc, true))}`, pc); break loop;
        }
        j += 2;
      }
      if (j < end) {
        // The instruction at j left the block to call out (which, inside the block's
        // loop, would make the optimiser check its arrays again at every instruction).
        // It retires here; the block goes on from the next one.
        n -= (end - j - 2) >> 1;
        pc = base + (j << 1) + 4;
        if (this.callOut(cache[j], cache[j + 1], n)) break;
      }
    }
    return this.retire(pc, n, exit);
  }

  /**
   * The instructions that leave their block to call out: a store to a page
   * with flags, a misaligned load or store, and a counter read. A store's slow path (memory.ts) marks the
   * page dirty, hands it to a checkpoint still reading it live, and drops
   * decoded words it overwrites (of this very block too: their cleared
   * lengths make `run` decode the rest of the block again). `n` counts the instructions of this run so far,
   * this one included. Returns true when the run must stop after it: memory
   * is braking (copies kept for checkpoints in flight reached their limit).
   */
  private callOut(w: number, imm: number, n: number): boolean {
    const regs = this.regs;
    const mem = this.memory;
    const a = (regs[(w >>> 14) & 31] + imm) >>> 0;
    const value = regs[(w >>> 19) & 31];
    switch (w & 255) {
      // Loads come here only when misaligned.
      case Op.LH: regs[(w >>> 8) & 63] = mem.view.getInt16(a, true); return false;
      case Op.LHU: regs[(w >>> 8) & 63] = mem.view.getUint16(a, true); return false;
      case Op.LW: regs[(w >>> 8) & 63] = mem.view.getInt32(a, true); return false;
      case Op.SB: mem.touch(a, 1); mem.view.setInt8(a, value); return mem.braking;
      case Op.SH: mem.touch(a, 2); mem.view.setInt16(a, value, true); return mem.braking;
      case Op.SW: mem.touch(a, 4); mem.view.setInt32(a, value, true); return mem.braking;
      case Op.CSR: regs[(w >>> 8) & 63] = this.readCsr(imm, n); return false;
      default: throw new Error(`op ${w & 255} does not call out`);
    }
  }

  /**
   * The end of a run, kept out of `run`: code after its loop first executes
   * when the loop is already optimised (on-stack), and an operation there
   * with no type feedback yet would throw the optimised loop away at every
   * exit.
   */
  private retire(pc: number, n: number, exit: Exit): Exit {
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

/** Does an instruction with this op end its basic block (it may go somewhere other than the next one, or stop the run)? */
function endsBlock(op: number): boolean {
  return (op >= Op.JAL && op <= Op.BGEU) || op === Op.ECALL || op === Op.EBREAK || (op >= Op.BRANCH_MISALIGNED && op <= Op.ILLEGAL);
}

/**
 * Decode the basic block that starts at instruction slot `first` of the page
 * at `base`, and record for each of its slots how many instructions run from
 * there to the block's end: its last is a jump, a branch, a stop (ecall,
 * ebreak, an illegal instruction) or the page's last slot. A block running
 * into one decoded before ends with it. Returns the length from `first`.
 */
export function decodeBlock(cache: Int32Array, first: number, dv: DataView, base: number): number {
  let k = first;
  let len = 1;
  for (;; k++) {
    let w = cache[k << 1];
    if (w === 0) w = decodeInto(cache, k << 1, dv.getInt32(base + (k << 2), true), base + (k << 2));
    if (endsBlock(w & 255) || k === SLOTS_PER_PAGE - 1) break;
    const next = cache[BLOCKS + k + 1];
    if (next !== 0) {
      len = next + 1;
      break;
    }
  }
  for (let s = k; s > first; s--) cache[BLOCKS + s] = len++;
  cache[BLOCKS + first] = len;
  for (let s = first; s < k; s++) fuse(cache, s);
  return len;
}

/**
 * Fuse the instruction in `slot` with the next, in `slot + 1` of the same
 * block, where they are a common pair: one dispatch instead of two. The second keeps its
 * own decoded words (a jump may land on it), and the fused one falls back to
 * the first alone when a run ends between them. Writing either slot drops
 * both (memory.ts, forgetCode).
 */
function fuse(cache: Int32Array, slot: number): void {
  const w = cache[slot << 1];
  const next = cache[(slot + 1) << 1] & 255;
  let fused = 0;
  if ((w & 255) === Op.ADDI) fused = next === Op.BNE ? Op.ADDI_BNE : next === Op.BEQ ? Op.ADDI_BEQ : 0;
  else if ((w & 255) === Op.SLLI) fused = next === Op.ADD ? Op.SLLI_ADD : 0;
  if (fused !== 0) cache[slot << 1] = (w & ~255) | fused;
}

const SLOTS_PER_PAGE = 1024;

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
