/**
 * The ELF32 RISC-V loader: turns a statically linked RV32 executable into an
 * `Image` (see docs/guest-abi.md, "Images").
 *
 * The parser is strict and total: every malformed input throws an `ImageError`
 * whose `detail.offset` is the byte offset (in the file) of the offending field,
 * and whose message says what was found and what was expected. No input can make
 * it throw anything else, loop for long, or allocate more than the file's own
 * size (plus at most `memoryBytes` of copied segment data, which is bounded by
 * the guest's memory because loaded segments may not overlap).
 *
 * Layouts used (all little-endian, from the System V gABI):
 *
 *   ELF header (52 bytes)          program header (32 bytes)   section header (40 bytes)
 *    0 e_ident[16]                  0 p_type                     0 sh_name    20 sh_size
 *   16 e_type       u16             4 p_offset                   4 sh_type    24 sh_link
 *   18 e_machine    u16             8 p_vaddr                    8 sh_flags   28 sh_info
 *   20 e_version    u32            12 p_paddr                   12 sh_addr    32 sh_addralign
 *   24 e_entry      u32            16 p_filesz                  16 sh_offset  36 sh_entsize
 *   28 e_phoff      u32            20 p_memsz
 *   32 e_shoff      u32            24 p_flags                  symbol (16 bytes)
 *   36 e_flags      u32            28 p_align                    0 st_name  4 st_value
 *   40 e_ehsize     u16                                          8 st_size 12 st_info
 *   42 e_phentsize  u16                                         13 st_other 14 st_shndx
 *   44 e_phnum      u16
 *   46 e_shentsize  u16
 *   48 e_shnum      u16
 *   50 e_shstrndx   u16
 */
import { type Image, ImageError, type Segment } from "./image";

const EHDR_SIZE = 52;
const PHDR_SIZE = 32;
const SHDR_SIZE = 40;
const SYM_SIZE = 16;

const ELFCLASS32 = 1;
const ELFDATA2LSB = 1;
const EV_CURRENT = 1;
const ET_EXEC = 2;
const EM_RISCV = 243;
const PT_LOAD = 1;
/** e_phnum value meaning "the real count is in section 0's sh_info" (extended numbering). */
const PN_XNUM = 0xffff;
const SHT_SYMTAB = 2;
const SHT_STRTAB = 3;
const STT_SECTION = 3;
const STT_FILE = 4;
const STB_LOCAL = 0;
const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;
const SHN_ABS = 0xfff1;
/** Symbol names longer than this are skipped (keeps symbol reading linear-ish on hostile input). */
const MAX_SYMBOL_NAME = 1024;

const FOUR_GIB = 0x1_0000_0000;

const CLASS_NAMES: Record<number, string> = { 0: "ELFCLASSNONE", 1: "ELFCLASS32", 2: "ELFCLASS64, a 64-bit file" };
const DATA_NAMES: Record<number, string> = { 0: "ELFDATANONE", 1: "little-endian", 2: "big-endian" };
const TYPE_NAMES: Record<number, string> = {
  0: "ET_NONE",
  1: "ET_REL, a relocatable object file: link it first",
  2: "ET_EXEC",
  3: "ET_DYN, a shared object or position-independent executable: link with -static -no-pie",
  4: "ET_CORE, a core dump",
};
const MACHINE_NAMES: Record<number, string> = {
  0: "none",
  2: "SPARC",
  3: "x86",
  8: "MIPS",
  20: "PowerPC",
  21: "PowerPC64",
  22: "S/390",
  40: "ARM",
  62: "x86-64",
  183: "AArch64",
  243: "RISC-V",
  258: "LoongArch",
};

function hex(n: number): string {
  return "0x" + n.toString(16);
}

function named(value: number, names: Record<number, string>): string {
  const name = Object.hasOwn(names, value) ? names[value] : undefined;
  return name === undefined ? String(value) : `${value} (${name})`;
}

function fail(offset: number, message: string): never {
  throw new ImageError(`ELF: ${message}`, { offset });
}

/** True if `bytes` starts with the ELF magic `\x7fELF` (says nothing about validity). */
export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

interface LoadSegment {
  /** Index of the program header, for messages. */
  index: number;
  /** File offset of the program header. */
  at: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

/**
 * Parse a statically linked ELF32 little-endian RISC-V executable (ET_EXEC) into an
 * `Image` for a guest with `memoryBytes` bytes of memory.
 *
 * @throws ImageError for any malformed or unsuitable file (with `detail.offset`).
 * @throws RangeError only if `memoryBytes` itself is not an integer in [0, 2^32]
 *   (a caller bug, not bad input).
 */
export function loadElf(bytes: Uint8Array, memoryBytes: number): Image {
  if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 0 || memoryBytes > FOUR_GIB) {
    throw new RangeError(`loadElf: memoryBytes must be an integer in [0, 2^32], got ${memoryBytes}`);
  }
  const len = bytes.length;

  // --- e_ident ---------------------------------------------------------------
  const magic = [0x7f, 0x45, 0x4c, 0x46];
  for (let i = 0; i < 4 && i < len; i++) {
    if (bytes[i] !== magic[i]) {
      const found = Array.from(bytes.subarray(0, Math.min(4, len)), (b) => b.toString(16).padStart(2, "0")).join(" ");
      fail(i, `magic at offset 0 is ${found}, expected 7f 45 4c 46 ("\\x7fELF"): not an ELF file`);
    }
  }
  if (len < EHDR_SIZE) {
    fail(len, `file is ${len} bytes, shorter than the ${EHDR_SIZE}-byte ELF32 header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (off: number): number => view.getUint16(off, true);
  const u32 = (off: number): number => view.getUint32(off, true);

  if (bytes[4] !== ELFCLASS32) {
    fail(4, `EI_CLASS at offset 4 is ${named(bytes[4], CLASS_NAMES)}, expected 1 (ELFCLASS32): the guest is RV32`);
  }
  if (bytes[5] !== ELFDATA2LSB) {
    fail(5, `EI_DATA at offset 5 is ${named(bytes[5], DATA_NAMES)}, expected 1 (little-endian)`);
  }
  if (bytes[6] !== EV_CURRENT) {
    fail(6, `EI_VERSION at offset 6 is ${bytes[6]}, expected 1 (EV_CURRENT)`);
  }

  // --- ELF header ------------------------------------------------------------
  const eType = u16(16);
  if (eType !== ET_EXEC) {
    fail(16, `e_type at offset 16 is ${named(eType, TYPE_NAMES)}, expected 2 (ET_EXEC, a statically linked executable)`);
  }
  const eMachine = u16(18);
  if (eMachine !== EM_RISCV) {
    fail(18, `e_machine at offset 18 is ${named(eMachine, MACHINE_NAMES)}, expected 243 (RISC-V)`);
  }
  const eVersion = u32(20);
  if (eVersion !== EV_CURRENT) {
    fail(20, `e_version at offset 20 is ${eVersion}, expected 1 (EV_CURRENT)`);
  }
  const entry = u32(24);
  const phoff = u32(28);
  const phentsize = u16(42);
  const phnum = u16(44);
  if (phentsize !== PHDR_SIZE) {
    fail(42, `e_phentsize at offset 42 is ${phentsize}, expected ${PHDR_SIZE} (the size of an ELF32 program header)`);
  }
  if (phnum === 0) {
    fail(44, `e_phnum at offset 44 is 0: no program headers, expected at least one PT_LOAD segment`);
  }
  if (phnum === PN_XNUM) {
    fail(44, `e_phnum at offset 44 is ${PN_XNUM} (PN_XNUM, extended numbering), which is not supported; expected fewer than ${PN_XNUM} program headers`);
  }
  if (phoff >= len) {
    fail(28, `e_phoff at offset 28 is ${hex(phoff)}, beyond the end of the ${len}-byte file; expected the program header table's file offset`);
  }
  const phEnd = phoff + phnum * PHDR_SIZE; // < 2^32 + 2^21: exact in a double
  if (phEnd > len) {
    fail(
      44,
      `e_phnum at offset 44 is ${phnum}: the program header table (${phnum} × ${PHDR_SIZE} bytes at ${hex(phoff)}) ` +
        `ends at ${hex(phEnd)}, beyond the end of the ${len}-byte file`,
    );
  }

  // --- program headers -------------------------------------------------------
  const loads: LoadSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHDR_SIZE;
    if (u32(at) !== PT_LOAD) continue; // PT_NOTE, PT_GNU_STACK, PT_RISCV_ATTRIBUTES, ...: nothing to load
    const where = `PT_LOAD program header ${i} (at ${hex(at)})`;
    const offset = u32(at + 4);
    // The guest has no MMU: physical = virtual, and the program's code and data are
    // linked against p_vaddr, so that is where the bytes must be at run time. (p_paddr
    // is the load memory address, which differs only for ROM-to-RAM layouts made with
    // a linker script's AT>; for ordinary links it equals p_vaddr.) Linux and QEMU's
    // user-mode loader likewise use p_vaddr.
    const vaddr = u32(at + 8);
    const filesz = u32(at + 16);
    const memsz = u32(at + 20);
    if (offset > len) {
      fail(at + 4, `${where}: p_offset at offset ${at + 4} is ${hex(offset)}, beyond the end of the ${len}-byte file`);
    }
    if (offset + filesz > len) {
      fail(
        at + 16,
        `${where}: p_filesz at offset ${at + 16} is ${hex(filesz)}: the segment's data (${hex(offset)}..${hex(offset + filesz)}) ` +
          `extends beyond the end of the ${len}-byte file`,
      );
    }
    if (filesz > memsz) {
      fail(at + 16, `${where}: p_filesz at offset ${at + 16} is ${hex(filesz)}, larger than p_memsz ${hex(memsz)}; expected p_filesz ≤ p_memsz`);
    }
    const end = vaddr + memsz; // < 2^33: exact in a double
    if (end > FOUR_GIB) {
      fail(
        at + 20,
        `${where}: p_vaddr ${hex(vaddr)} + p_memsz ${hex(memsz)} (p_memsz at offset ${at + 20}) ` +
          `wraps past the end of the 32-bit address space`,
      );
    }
    if (memsz > 0 && vaddr >= memoryBytes) {
      fail(at + 8, `${where}: p_vaddr at offset ${at + 8} is ${hex(vaddr)}, beyond the guest's ${hex(memoryBytes)}-byte memory`);
    }
    if (end > memoryBytes) {
      fail(
        at + 20,
        `${where}: p_memsz at offset ${at + 20} is ${hex(memsz)}: the segment ${hex(vaddr)}..${hex(end)} ` +
          `extends beyond the guest's ${hex(memoryBytes)}-byte memory`,
      );
    }
    if (memsz === 0) continue; // occupies nothing
    loads.push({ index: i, at, offset, vaddr, filesz, memsz });
  }
  if (loads.length === 0) {
    fail(44, `no non-empty PT_LOAD segment among the ${phnum} program headers at ${hex(phoff)}; expected at least one`);
  }

  // Overlap check in O(n log n): sort by address, compare neighbours.
  const sorted = [...loads].sort((a, b) => a.vaddr - b.vaddr || a.index - b.index);
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1];
    const cur = sorted[k];
    if (cur.vaddr < prev.vaddr + prev.memsz) {
      const [first, second] = prev.index < cur.index ? [prev, cur] : [cur, prev];
      fail(
        second.at + 8,
        `PT_LOAD program header ${second.index} (${hex(second.vaddr)}..${hex(second.vaddr + second.memsz)}, p_vaddr at offset ${second.at + 8}) ` +
          `overlaps PT_LOAD program header ${first.index} (${hex(first.vaddr)}..${hex(first.vaddr + first.memsz)}); expected disjoint segments`,
      );
    }
  }

  if (entry % 4 !== 0) {
    fail(24, `e_entry at offset 24 is ${hex(entry)}, not 4-byte aligned; expected an aligned instruction address`);
  }
  if (!loads.some((s) => entry >= s.vaddr && entry < s.vaddr + s.memsz)) {
    fail(24, `e_entry at offset 24 is ${hex(entry)}, outside every loaded segment; expected an address inside a PT_LOAD segment`);
  }

  const segments: Segment[] = loads.map((s) => ({
    addr: s.vaddr,
    data: bytes.slice(s.offset, s.offset + s.filesz), // a copy: the image must not alias the input
    size: s.memsz,
  }));
  return { segments, entry, symbols: readSymbols(bytes, view) };
}

/**
 * Best-effort symbol table: the first SHT_SYMTAB section and the SHT_STRTAB it links
 * to. Section headers are optional for loading, so anything malformed here yields
 * fewer (or no) symbols rather than an error. Undefined, section and file symbols are
 * skipped; a global symbol wins over a local one of the same name.
 */
function readSymbols(bytes: Uint8Array, view: DataView): Record<string, number> {
  const symbols: Record<string, number> = {};
  const len = bytes.length;
  const shoff = view.getUint32(32, true);
  const shentsize = view.getUint16(46, true);
  const shnum = view.getUint16(48, true);
  if (shoff === 0 || shnum === 0 || shentsize !== SHDR_SIZE) return symbols;
  if (shoff + shnum * SHDR_SIZE > len) return symbols;
  const section = (i: number) => {
    const at = shoff + i * SHDR_SIZE;
    return {
      type: view.getUint32(at + 4, true),
      offset: view.getUint32(at + 16, true),
      size: view.getUint32(at + 20, true),
      link: view.getUint32(at + 24, true),
      entsize: view.getUint32(at + 36, true),
    };
  };
  let symtab: ReturnType<typeof section> | undefined;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type === SHT_SYMTAB) {
      symtab = s;
      break;
    }
  }
  if (symtab === undefined) return symbols;
  if (symtab.entsize !== SYM_SIZE && symtab.entsize !== 0) return symbols;
  if (symtab.offset + symtab.size > len || symtab.link >= shnum) return symbols;
  const strtab = section(symtab.link);
  if (strtab.type !== SHT_STRTAB || strtab.offset + strtab.size > len) return symbols;

  const decoder = new TextDecoder(); // utf-8, replacing invalid sequences (never throws)
  const strStart = strtab.offset;
  const strEnd = strtab.offset + strtab.size;
  const nameAt = (stName: number): string | undefined => {
    if (stName === 0 || stName >= strtab.size) return undefined;
    const start = strStart + stName;
    const limit = Math.min(strEnd, start + MAX_SYMBOL_NAME + 1);
    let end = start;
    while (end < limit && bytes[end] !== 0) end++;
    if (end === limit || end === start) return undefined; // unterminated, too long or empty
    return decoder.decode(bytes.subarray(start, end));
  };

  const count = Math.floor(symtab.size / SYM_SIZE);
  const globals: Array<[string, number]> = [];
  const set = (name: string, value: number) =>
    // defineProperty so that even a symbol called "__proto__" becomes a plain own property.
    Object.defineProperty(symbols, name, { value, enumerable: true, writable: true, configurable: true });
  for (let i = 1; i < count; i++) {
    const at = symtab.offset + i * SYM_SIZE;
    const info = bytes[at + 12];
    const shndx = view.getUint16(at + 14, true);
    const type = info & 0xf;
    if (type === STT_SECTION || type === STT_FILE) continue;
    if (shndx === SHN_UNDEF || (shndx >= SHN_LORESERVE && shndx !== SHN_ABS)) continue;
    const name = nameAt(view.getUint32(at, true));
    if (name === undefined) continue;
    const value = view.getUint32(at + 4, true);
    if (info >> 4 === STB_LOCAL) set(name, value);
    else globals.push([name, value]);
  }
  for (const [name, value] of globals) set(name, value);
  return symbols;
}
