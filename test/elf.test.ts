import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isElf, loadElf } from "../src/image/elf";
import { flatImage, type Image, ImageError } from "../src/image/image";
import {
  buildElf,
  patch,
  PT_GNU_STACK,
  PT_NOTE,
  PT_RISCV_ATTRIBUTES,
  SHN_ABS,
  STT_FILE,
  STT_FUNC,
  STT_OBJECT,
  STT_SECTION,
  words,
} from "./helpers/elf-builder";
import { runs } from "./helpers/fuzz.ts";

const MEM = 256 * 4096; // the default guest: 1 MiB

// addi x0,x0,0 (nop); li a7,0; ecall
const CODE = words(0x00000013, 0x00000893, 0x00000073);

function simple(entry = 0) {
  return buildElf({ entry, segments: [{ vaddr: 0, data: CODE }] });
}

/** Run `f`, require an ImageError, and return it. */
function imageError(f: () => unknown): ImageError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ImageError);
    return e as ImageError;
  }
  throw new Error("expected an ImageError, but nothing was thrown");
}

function expectElfError(bytes: Uint8Array, offset: number, message: RegExp | string, mem = MEM): ImageError {
  const err = imageError(() => loadElf(bytes, mem));
  expect(err.name).toBe("ImageError");
  if (typeof message === "string") expect(err.message).toBe(message);
  else expect(err.message).toMatch(message);
  expect(err.message.startsWith("ELF: ")).toBe(true);
  expect(err.detail.offset).toBe(offset);
  return err;
}

/** The invariants every image the loader returns must satisfy. */
function checkImage(image: Image, mem: number) {
  expect(image.entry % 4).toBe(0);
  expect(image.segments.length).toBeGreaterThan(0);
  let inside = false;
  const sorted = [...image.segments].sort((a, b) => a.addr - b.addr);
  for (let k = 0; k < sorted.length; k++) {
    const s = sorted[k];
    expect(s.data.length).toBeLessThanOrEqual(s.size);
    expect(s.size).toBeGreaterThan(0);
    expect(s.addr + s.size).toBeLessThanOrEqual(mem);
    if (k > 0) expect(s.addr).toBeGreaterThanOrEqual(sorted[k - 1].addr + sorted[k - 1].size);
    if (image.entry >= s.addr && image.entry < s.addr + s.size) inside = true;
  }
  expect(inside).toBe(true);
}

describe("isElf", () => {
  it("recognises the magic only", () => {
    expect(isElf(simple().bytes)).toBe(true);
    expect(isElf(new Uint8Array([0x7f, 0x45, 0x4c, 0x46]))).toBe(true);
    expect(isElf(new Uint8Array([0x7f, 0x45, 0x4c]))).toBe(false);
    expect(isElf(new Uint8Array(0))).toBe(false);
    expect(isElf(new TextEncoder().encode("_start: li a0, 0"))).toBe(false);
  });
});

describe("loadElf: valid files", () => {
  it("loads a one-segment file", () => {
    const elf = simple();
    const image = loadElf(elf.bytes, MEM);
    expect(image).toEqual({ segments: [{ addr: 0, data: CODE, size: CODE.length }], entry: 0, symbols: {} });
    checkImage(image, MEM);
  });

  it("copies segment data instead of aliasing the input", () => {
    const elf = simple();
    const image = loadElf(elf.bytes, MEM);
    elf.bytes.fill(0xff);
    expect(image.segments[0].data).toEqual(CODE);
    expect(image.segments[0].data.buffer).not.toBe(elf.bytes.buffer);
  });

  it("reads from a subarray view (non-zero byteOffset)", () => {
    const elf = simple();
    const big = new Uint8Array(elf.bytes.length + 7);
    big.set(elf.bytes, 7);
    const image = loadElf(big.subarray(7), MEM);
    expect(image.segments[0].data).toEqual(CODE);
  });

  it("loads two segments, the second .bss-like (p_memsz > p_filesz)", () => {
    const data = words(0x11111111, 0x22222222);
    const elf = buildElf({
      entry: 0,
      segments: [
        { vaddr: 0, data: CODE, flags: 5 },
        { vaddr: 0x2000, data, memsz: 0x400, flags: 6 },
      ],
    });
    const image = loadElf(elf.bytes, MEM);
    expect(image.segments).toEqual([
      { addr: 0, data: CODE, size: 12 },
      { addr: 0x2000, data, size: 0x400 },
    ]);
    checkImage(image, MEM);
  });

  it("uses a non-zero entry point", () => {
    const elf = buildElf({ entry: 0x1008, segments: [{ vaddr: 0x1000, data: words(0, 0, 0x13, 0x73) }] });
    const image = loadElf(elf.bytes, MEM);
    expect(image.entry).toBe(0x1008);
    expect(image.segments[0].addr).toBe(0x1000);
    checkImage(image, MEM);
  });

  it("accepts an entry in the zero-filled part and a segment ending exactly at the end of memory", () => {
    const elf = buildElf({ entry: MEM - 4, segments: [{ vaddr: MEM - 0x1000, data: CODE, memsz: 0x1000 }] });
    const image = loadElf(elf.bytes, MEM);
    expect(image.entry).toBe(MEM - 4);
    expect(image.segments[0].size).toBe(0x1000);
  });

  it("uses p_vaddr, not p_paddr", () => {
    const elf = buildElf({ entry: 0x100, segments: [{ vaddr: 0x100, paddr: 0x80000000, data: CODE }] });
    expect(loadElf(elf.bytes, MEM).segments[0].addr).toBe(0x100);
  });

  it("ignores non-LOAD segments, even ones with nonsense fields", () => {
    const elf = buildElf({
      entry: 0,
      segments: [
        { type: PT_RISCV_ATTRIBUTES, vaddr: 0, data: new Uint8Array([0x41, 0, 0, 0]) },
        { vaddr: 0, data: CODE },
        { type: PT_NOTE, vaddr: 0x10, data: words(0, 0, 0) }, // overlaps the LOAD: irrelevant
        { type: PT_GNU_STACK, vaddr: 0, flags: 6, align: 16 },
      ],
    });
    let bytes = elf.bytes;
    // Make the PT_GNU_STACK header absurd: it must still be ignored.
    bytes = patch(bytes, elf.phdr(3) + 4, 0xffffffff);
    bytes = patch(bytes, elf.phdr(3) + 8, 0xfffffff0);
    bytes = patch(bytes, elf.phdr(3) + 16, 0xffffffff);
    bytes = patch(bytes, elf.phdr(3) + 20, 0x10);
    const image = loadElf(bytes, MEM);
    expect(image.segments).toEqual([{ addr: 0, data: CODE, size: 12 }]);
  });

  it("skips empty PT_LOAD segments (p_memsz = 0)", () => {
    const elf = buildElf({ entry: 0, segments: [{ vaddr: 0, data: CODE }, { vaddr: 4, memsz: 0 }] });
    expect(loadElf(elf.bytes, MEM).segments).toEqual([{ addr: 0, data: CODE, size: 12 }]);
  });

  it("reads symbols when a .symtab is present", () => {
    const elf = buildElf({
      entry: 0x100,
      segments: [
        { vaddr: 0x100, data: CODE },
        { vaddr: 0x2000, data: words(7), memsz: 64, flags: 6 },
      ],
      symbols: [
        { name: "prog.c", value: 0, type: STT_FILE, bind: "local", shndx: SHN_ABS },
        { name: "text", value: 0x100, type: STT_SECTION, bind: "local" },
        { name: "loop", value: 0x104, bind: "local" },
        { name: "dup", value: 0x108, bind: "local" },
        { name: "_start", value: 0x100, type: STT_FUNC },
        { name: "buf", value: 0x2000, type: STT_OBJECT, size: 64 },
        { name: "weakling", value: 0x104, bind: "weak" },
        { name: "dup", value: 0x100 },
        { name: "puts", value: 0, shndx: 0 }, // undefined: skipped
        { name: "STACK_SIZE", value: 0x800, shndx: SHN_ABS },
        { name: "__proto__", value: 0x10c, bind: "local" },
      ],
    });
    const image = loadElf(elf.bytes, MEM);
    expect(Object.keys(image.symbols).sort()).toEqual(["STACK_SIZE", "__proto__", "_start", "buf", "dup", "loop", "weakling"]);
    expect(image.symbols._start).toBe(0x100);
    expect(image.symbols.loop).toBe(0x104);
    expect(image.symbols.buf).toBe(0x2000);
    expect(image.symbols.weakling).toBe(0x104);
    expect(image.symbols.STACK_SIZE).toBe(0x800);
    expect(image.symbols.dup).toBe(0x100); // the global wins over the local
    expect(Object.getOwnPropertyDescriptor(image.symbols, "__proto__")?.value).toBe(0x10c);
  });

  it("ignores malformed section headers (they are optional for loading)", () => {
    const elf = buildElf({ entry: 0, segments: [{ vaddr: 0, data: CODE }], symbols: [{ name: "_start", value: 0 }] });
    expect(loadElf(elf.bytes, MEM).symbols).toEqual({ _start: 0 });
    const broken = [
      patch(elf.bytes, 32, 0xfffffff0), // e_shoff beyond the file
      patch(elf.bytes, 46, 64, 2), // e_shentsize wrong
      patch(elf.bytes, 48, 0xffff, 2), // e_shnum far too many
      patch(elf.bytes, elf.shoff + 2 * 40 + 20, 0xffffffff), // .symtab sh_size huge
      patch(elf.bytes, elf.shoff + 2 * 40 + 24, 99), // .symtab sh_link out of range
      patch(elf.bytes, elf.shoff + 3 * 40 + 16, 0xffffff00), // .strtab sh_offset beyond the file
    ];
    for (const bytes of broken) {
      const image = loadElf(bytes, MEM);
      expect(image.segments).toEqual([{ addr: 0, data: CODE, size: 12 }]);
      expect(image.symbols).toEqual({});
    }
    // A name offset past the string table drops just that symbol.
    const badName = patch(elf.bytes, elf.shoff + 3 * 40 + 20, 1); // .strtab sh_size = 1
    expect(loadElf(badName, MEM).symbols).toEqual({});
  });

  it("rejects a bad memoryBytes argument as a caller bug (RangeError)", () => {
    expect(() => loadElf(simple().bytes, -1)).toThrow(RangeError);
    expect(() => loadElf(simple().bytes, 1.5)).toThrow(RangeError);
  });
});

describe("loadElf: malformed files", () => {
  const good = simple().bytes;
  const ph0 = simple().phdr(0);

  it("too short", () => {
    expectElfError(good.slice(0, 40), 40, "ELF: file is 40 bytes, shorter than the 52-byte ELF32 header");
    expectElfError(new Uint8Array(0), 0, /file is 0 bytes/);
    expectElfError(good.slice(0, 3), 3, /file is 3 bytes/);
  });

  it("bad magic", () => {
    expectElfError(new Uint8Array([0x4d, 0x5a, 0x90, 0]), 0, /magic at offset 0 is 4d 5a 90 00, expected 7f 45 4c 46/);
    expectElfError(patch(good, 2, 0x58, 1), 2, /magic at offset 0 is 7f 45 58 46, expected 7f 45 4c 46 \("\\x7fELF"\): not an ELF file/);
    expectElfError(new TextEncoder().encode("_start:\n  li a0, 0\n"), 0, /not an ELF file/);
  });

  it("ELF64", () => {
    expectElfError(patch(good, 4, 2, 1), 4, "ELF: EI_CLASS at offset 4 is 2 (ELFCLASS64, a 64-bit file), expected 1 (ELFCLASS32): the guest is RV32");
  });

  it("big-endian", () => {
    expectElfError(patch(good, 5, 2, 1), 5, "ELF: EI_DATA at offset 5 is 2 (big-endian), expected 1 (little-endian)");
  });

  it("bad EI_VERSION and e_version", () => {
    expectElfError(patch(good, 6, 0, 1), 6, /EI_VERSION at offset 6 is 0, expected 1/);
    expectElfError(patch(good, 20, 2), 20, /e_version at offset 20 is 2, expected 1/);
  });

  it("wrong machine", () => {
    expectElfError(patch(good, 18, 62, 2), 18, "ELF: e_machine at offset 18 is 62 (x86-64), expected 243 (RISC-V)");
    expectElfError(patch(good, 18, 40, 2), 18, /is 40 \(ARM\)/);
    expectElfError(patch(good, 18, 9999, 2), 18, "ELF: e_machine at offset 18 is 9999, expected 243 (RISC-V)");
  });

  it("wrong type (ET_DYN, ET_REL, ET_CORE)", () => {
    expectElfError(patch(good, 16, 3, 2), 16, /e_type at offset 16 is 3 \(ET_DYN, .*-static -no-pie\), expected 2 \(ET_EXEC/);
    expectElfError(patch(good, 16, 1, 2), 16, /e_type at offset 16 is 1 \(ET_REL, a relocatable object file/);
    expectElfError(patch(good, 16, 4, 2), 16, /is 4 \(ET_CORE/);
  });

  it("bad e_phentsize", () => {
    expectElfError(patch(good, 42, 56, 2), 42, "ELF: e_phentsize at offset 42 is 56, expected 32 (the size of an ELF32 program header)");
  });

  it("e_phoff beyond the file", () => {
    expectElfError(patch(good, 28, good.length), 28, new RegExp(`e_phoff at offset 28 is 0x${good.length.toString(16)}, beyond the end of the ${good.length}-byte file`));
    expectElfError(patch(good, 28, 0xffffffff), 28, /e_phoff at offset 28 is 0xffffffff/);
  });

  it("e_phnum × e_phentsize beyond the file", () => {
    expectElfError(patch(good, 44, 3, 2), 44, new RegExp(`e_phnum at offset 44 is 3: the program header table \\(3 × 32 bytes at 0x34\\) ends at 0x94, beyond the end of the ${good.length}-byte file`));
    expectElfError(patch(good, 28, good.length - 16), 44, /e_phnum at offset 44 is 1: .* beyond the end/);
    expectElfError(patch(good, 44, 0xfffe, 2), 44, /e_phnum at offset 44 is 65534/);
    expectElfError(patch(good, 44, 0xffff, 2), 44, /PN_XNUM/);
  });

  it("no program headers at all", () => {
    expectElfError(patch(good, 44, 0, 2), 44, /e_phnum at offset 44 is 0: no program headers/);
  });

  it("segment offset beyond the file", () => {
    expectElfError(patch(good, ph0 + 4, 0x10000), ph0 + 4, new RegExp(`PT_LOAD program header 0 \\(at 0x34\\): p_offset at offset ${ph0 + 4} is 0x10000, beyond the end`));
  });

  it("segment data beyond the file (including a p_filesz of 0xFFFFFFFF)", () => {
    expectElfError(patch(good, ph0 + 16, 13), ph0 + 16, /p_filesz at offset 68 is 0xd: the segment's data \(0x54\.\.0x61\) extends beyond the end of the 96-byte file/);
    const huge = patch(patch(good, ph0 + 16, 0xffffffff), ph0 + 20, 0xffffffff);
    const err = expectElfError(huge, ph0 + 16, /p_filesz at offset 68 is 0xffffffff/);
    expect(err).not.toBeInstanceOf(RangeError);
  });

  it("p_filesz > p_memsz", () => {
    expectElfError(patch(good, ph0 + 20, 8), ph0 + 16, "ELF: PT_LOAD program header 0 (at 0x34): p_filesz at offset 68 is 0xc, larger than p_memsz 0x8; expected p_filesz ≤ p_memsz");
  });

  it("segment beyond guest memory", () => {
    const start = buildElf({ entry: 0, segments: [{ vaddr: 0, data: CODE }, { vaddr: MEM, data: words(1) }] });
    expectElfError(start.bytes, start.phdr(1) + 8, /PT_LOAD program header 1 \(at 0x54\): p_vaddr at offset 92 is 0x100000, beyond the guest's 0x100000-byte memory/);
    const end = buildElf({ entry: 0, segments: [{ vaddr: 0, data: CODE, memsz: MEM + 4 }] });
    expectElfError(end.bytes, end.phdr(0) + 20, /p_memsz at offset 72 is 0x100004: the segment 0x0\.\.0x100004 extends beyond the guest's 0x100000-byte memory/);
    // The same file fits in a bigger guest.
    expect(loadElf(end.bytes, 2 * MEM).segments[0].size).toBe(MEM + 4);
  });

  it("address overflow (p_vaddr + p_memsz > 2^32)", () => {
    const elf = buildElf({ entry: 0xfffff000, segments: [{ vaddr: 0xfffff000, data: CODE, memsz: 0x2000 }] });
    for (const mem of [MEM, 2 ** 32]) {
      expectElfError(elf.bytes, elf.phdr(0) + 20, /p_vaddr 0xfffff000 \+ p_memsz 0x2000 \(p_memsz at offset 72\) wraps past the end of the 32-bit address space/, mem);
    }
  });

  it("overlapping segments", () => {
    const elf = buildElf({
      entry: 0,
      segments: [
        { vaddr: 0x1000, data: words(1, 2) },
        { vaddr: 0, data: CODE, memsz: 0x1000 },
        { vaddr: 0x1004, data: words(3) },
      ],
    });
    expectElfError(elf.bytes, elf.phdr(2) + 8, "ELF: PT_LOAD program header 2 (0x1004..0x1008, p_vaddr at offset 124) overlaps PT_LOAD program header 0 (0x1000..0x1008); expected disjoint segments");
    // Reported the same whichever comes first in the file.
    const swapped = buildElf({ entry: 0, segments: [{ vaddr: 0x10, data: CODE }, { vaddr: 0, data: CODE, memsz: 0x14 }] });
    expectElfError(swapped.bytes, swapped.phdr(1) + 8, /program header 1 \(0x0\.\.0x14.*overlaps PT_LOAD program header 0 \(0x10\.\.0x1c\)/);
    // Touching is fine.
    const touching = buildElf({ entry: 0, segments: [{ vaddr: 0, data: CODE }, { vaddr: 12, data: CODE }] });
    expect(loadElf(touching.bytes, MEM).segments).toHaveLength(2);
  });

  it("no PT_LOAD segment", () => {
    const elf = buildElf({ entry: 0, segments: [{ type: PT_NOTE, vaddr: 0, data: CODE }, { type: PT_GNU_STACK, vaddr: 0 }] });
    expectElfError(elf.bytes, 44, "ELF: no non-empty PT_LOAD segment among the 2 program headers at 0x34; expected at least one");
  });

  it("entry outside the loaded segments", () => {
    const elf = buildElf({ entry: 0x2000, segments: [{ vaddr: 0x1000, data: CODE, memsz: 0x1000 }] });
    expectElfError(elf.bytes, 24, "ELF: e_entry at offset 24 is 0x2000, outside every loaded segment; expected an address inside a PT_LOAD segment");
  });

  it("misaligned entry", () => {
    expectElfError(simple(2).bytes, 24, "ELF: e_entry at offset 24 is 0x2, not 4-byte aligned; expected an aligned instruction address");
  });
});

describe("loadElf: properties", () => {
  const valid = buildElf({
    entry: 0x104,
    segments: [
      { type: PT_RISCV_ATTRIBUTES, vaddr: 0, data: new Uint8Array([0x41, 1, 2, 3]) },
      { vaddr: 0x100, data: CODE },
      { vaddr: 0x2000, data: words(5, 6), memsz: 0x100, flags: 6 },
      { type: PT_GNU_STACK, vaddr: 0 },
    ],
    symbols: [
      { name: "_start", value: 0x104, type: STT_FUNC },
      { name: "loop", value: 0x108, bind: "local" },
      { name: "data", value: 0x2000, type: STT_OBJECT },
    ],
  }).bytes;

  /** Only an Image satisfying the invariants, or an ImageError with an offset inside (or at the end of) the file. */
  function total(bytes: Uint8Array, mem = MEM) {
    let image: Image;
    try {
      image = loadElf(bytes, mem);
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      const offset = e.detail.offset;
      if (offset === undefined || offset < 0 || offset > bytes.length) throw e;
      return;
    }
    checkImage(image, mem);
    for (const [name, value] of Object.entries(image.symbols)) {
      if (typeof name !== "string" || !Number.isInteger(value)) throw new Error(`bad symbol ${name}`);
    }
  }

  it("the valid base file loads", () => {
    const image = loadElf(valid, MEM);
    expect(image.entry).toBe(0x104);
    expect(image.symbols).toEqual({ _start: 0x104, loop: 0x108, data: 0x2000 });
  });

  it("random byte arrays give an Image or an ImageError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => total(bytes)),
      { numRuns: runs(2000) },
    );
    // Random bytes behind a valid ident, so the parser gets past the magic.
    const ident = valid.slice(0, 16);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (tail) => {
        const bytes = new Uint8Array(16 + tail.length);
        bytes.set(ident);
        bytes.set(tail, 16);
        total(bytes);
      }),
      { numRuns: runs(2000) },
    );
  });

  it("valid files with a random byte corrupted give an Image or an ImageError", () => {
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), (at, value) => {
        const bytes = valid.slice();
        bytes[at] = value;
        total(bytes);
      }),
      { numRuns: runs(3000) },
    );
  });

  it("valid files with random 32-bit fields overwritten give an Image or an ImageError", () => {
    const nasty = fc.oneof(
      fc.constantFrom(0, 1, 2, 3, 4, 0x7fffffff, 0x80000000, 0xfffffffc, 0xffffffff, valid.length, MEM, MEM - 4),
      fc.nat({ max: 0xffffffff }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 4), nasty), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(MEM, 16 * 4096, 2 ** 32),
        (edits, mem) => {
          let bytes = valid;
          for (const [at, v] of edits) bytes = patch(bytes, at, v);
          total(bytes, mem);
        },
      ),
      { numRuns: runs(2000) },
    );
  });
});

describe("flatImage", () => {
  it("loads a flat binary at 0 with entry 0", () => {
    const bin = words(0x00000013, 0x00000073);
    expect(flatImage(bin)).toEqual({ segments: [{ addr: 0, data: bin, size: 8 }], entry: 0, symbols: {} });
    expect(flatImage(new Uint8Array(0))).toEqual({ segments: [{ addr: 0, data: new Uint8Array(0), size: 0 }], entry: 0, symbols: {} });
  });
});
