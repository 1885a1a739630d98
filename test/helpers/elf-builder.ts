/**
 * A tiny ELF32 little-endian RISC-V executable builder for tests: makes files
 * with the given PT_LOAD (and other) program headers, entry point and, optionally,
 * a symbol table (.text/.symtab/.strtab/.shstrtab section headers).
 *
 * Layout: ELF header (52) | program headers (32 each) | segment data (each 4-aligned)
 *         | [.strtab | .symtab | .shstrtab | section headers]
 */

export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PT_GNU_STACK = 0x6474e551;
export const PT_RISCV_ATTRIBUTES = 0x70000003;
export const SHN_ABS = 0xfff1;
export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;

export interface ElfSegmentSpec {
  /** p_type; default PT_LOAD. */
  type?: number;
  vaddr: number;
  /** p_paddr; default = vaddr. */
  paddr?: number;
  /** The file bytes (p_filesz = data.length); default empty. */
  data?: Uint8Array;
  /** p_memsz; default = data.length. */
  memsz?: number;
  /** p_flags; default R+X (5). */
  flags?: number;
  /** p_align; default 4. */
  align?: number;
}

export interface ElfSymbolSpec {
  name: string;
  value: number;
  bind?: "local" | "global" | "weak";
  /** STT_*; default STT_NOTYPE. */
  type?: number;
  /** st_shndx; default 1 (the .text section). */
  shndx?: number;
  size?: number;
}

export interface ElfSpec {
  entry: number;
  segments: ElfSegmentSpec[];
  /** If given, a symbol table and section headers are emitted. */
  symbols?: ElfSymbolSpec[];
  /** e_type; default 2 (ET_EXEC). */
  type?: number;
  /** e_machine; default 243 (EM_RISCV). */
  machine?: number;
}

export interface BuiltElf {
  bytes: Uint8Array;
  /** File offset of the program header table (e_phoff). */
  phoff: number;
  /** File offset of program header i. */
  phdr(i: number): number;
  /** File offset of each segment's data. */
  dataOffsets: number[];
  /** File offset of the section header table, or 0. */
  shoff: number;
}

const align4 = (n: number) => (n + 3) & ~3;

export function buildElf(spec: ElfSpec): BuiltElf {
  const phoff = 52;
  const phnum = spec.segments.length;
  let cursor = phoff + phnum * 32;
  const dataOffsets: number[] = [];
  for (const s of spec.segments) {
    cursor = align4(cursor);
    dataOffsets.push(cursor);
    cursor += s.data?.length ?? 0;
  }

  // Optional symbol table.
  let strtab = new Uint8Array(0);
  let symtab = new Uint8Array(0);
  let shstrtab = new Uint8Array(0);
  let strtabOff = 0;
  let symtabOff = 0;
  let shstrtabOff = 0;
  let shoff = 0;
  let firstGlobal = 0;
  const shstrNames = ["", ".text", ".symtab", ".strtab", ".shstrtab"];
  const shstrIndex: number[] = [];
  if (spec.symbols) {
    const enc = new TextEncoder();
    const syms = [...spec.symbols].sort((a, b) => Number((a.bind ?? "global") !== "local") - Number((b.bind ?? "global") !== "local"));
    firstGlobal = 1 + syms.filter((s) => s.bind === "local").length;
    const strParts: number[] = [0];
    const nameOffsets = syms.map((s) => {
      const off = strParts.length;
      strParts.push(...enc.encode(s.name), 0);
      return off;
    });
    strtab = Uint8Array.from(strParts);
    symtab = new Uint8Array((syms.length + 1) * 16);
    const sv = new DataView(symtab.buffer);
    syms.forEach((s, k) => {
      const at = (k + 1) * 16;
      const bind = s.bind === "local" ? 0 : s.bind === "weak" ? 2 : 1;
      sv.setUint32(at, nameOffsets[k], true);
      sv.setUint32(at + 4, s.value >>> 0, true);
      sv.setUint32(at + 8, s.size ?? 0, true);
      sv.setUint8(at + 12, (bind << 4) | (s.type ?? STT_NOTYPE));
      sv.setUint8(at + 13, 0);
      sv.setUint16(at + 14, s.shndx ?? 1, true);
    });
    const sh: number[] = [];
    for (const n of shstrNames) {
      shstrIndex.push(sh.length);
      sh.push(...enc.encode(n), 0);
    }
    shstrtab = Uint8Array.from(sh);
    strtabOff = cursor;
    cursor += strtab.length;
    cursor = align4(cursor);
    symtabOff = cursor;
    cursor += symtab.length;
    shstrtabOff = cursor;
    cursor += shstrtab.length;
    cursor = align4(cursor);
    shoff = cursor;
    cursor += 5 * 40;
  }

  const bytes = new Uint8Array(cursor);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0]);
  v.setUint16(16, spec.type ?? 2, true);
  v.setUint16(18, spec.machine ?? 243, true);
  v.setUint32(20, 1, true);
  v.setUint32(24, spec.entry >>> 0, true);
  v.setUint32(28, phoff, true);
  v.setUint32(32, shoff, true);
  v.setUint32(36, 0, true); // e_flags (float ABI soft, no RVC)
  v.setUint16(40, 52, true);
  v.setUint16(42, 32, true);
  v.setUint16(44, phnum, true);
  v.setUint16(46, spec.symbols ? 40 : 0, true);
  v.setUint16(48, spec.symbols ? 5 : 0, true);
  v.setUint16(50, spec.symbols ? 4 : 0, true);

  spec.segments.forEach((s, i) => {
    const at = phoff + i * 32;
    const data = s.data ?? new Uint8Array(0);
    v.setUint32(at, s.type ?? PT_LOAD, true);
    v.setUint32(at + 4, dataOffsets[i], true);
    v.setUint32(at + 8, s.vaddr >>> 0, true);
    v.setUint32(at + 12, (s.paddr ?? s.vaddr) >>> 0, true);
    v.setUint32(at + 16, data.length, true);
    v.setUint32(at + 20, (s.memsz ?? data.length) >>> 0, true);
    v.setUint32(at + 24, s.flags ?? 5, true);
    v.setUint32(at + 28, s.align ?? 4, true);
    bytes.set(data, dataOffsets[i]);
  });

  if (spec.symbols) {
    bytes.set(strtab, strtabOff);
    bytes.set(symtab, symtabOff);
    bytes.set(shstrtab, shstrtabOff);
    const text = spec.segments[0];
    const section = (
      i: number,
      f: { type: number; flags?: number; addr?: number; offset: number; size: number; link?: number; info?: number; align?: number; entsize?: number },
    ) => {
      const at = shoff + i * 40;
      v.setUint32(at, shstrIndex[i], true);
      v.setUint32(at + 4, f.type, true);
      v.setUint32(at + 8, f.flags ?? 0, true);
      v.setUint32(at + 12, f.addr ?? 0, true);
      v.setUint32(at + 16, f.offset, true);
      v.setUint32(at + 20, f.size, true);
      v.setUint32(at + 24, f.link ?? 0, true);
      v.setUint32(at + 28, f.info ?? 0, true);
      v.setUint32(at + 32, f.align ?? 1, true);
      v.setUint32(at + 36, f.entsize ?? 0, true);
    };
    // Section 0 stays all zero (SHT_NULL).
    section(1, { type: 1, flags: 6, addr: text?.vaddr ?? 0, offset: dataOffsets[0] ?? 0, size: text?.data?.length ?? 0, align: 4 });
    section(2, { type: 2, offset: symtabOff, size: symtab.length, link: 3, info: firstGlobal, align: 4, entsize: 16 });
    section(3, { type: 3, offset: strtabOff, size: strtab.length });
    section(4, { type: 3, offset: shstrtabOff, size: shstrtab.length });
  }

  return { bytes, phoff, phdr: (i) => phoff + i * 32, dataOffsets, shoff };
}

/** Little-endian field patching for malformed-file tests (returns a patched copy). */
export function patch(bytes: Uint8Array, offset: number, value: number, width: 1 | 2 | 4 = 4): Uint8Array {
  const out = bytes.slice();
  const v = new DataView(out.buffer);
  if (width === 1) v.setUint8(offset, value);
  else if (width === 2) v.setUint16(offset, value, true);
  else v.setUint32(offset, value >>> 0, true);
  return out;
}

/** RV32 words to little-endian bytes (e.g. instructions). */
export function words(...ws: number[]): Uint8Array {
  const out = new Uint8Array(ws.length * 4);
  const v = new DataView(out.buffer);
  ws.forEach((w, i) => v.setUint32(i * 4, w >>> 0, true));
  return out;
}
