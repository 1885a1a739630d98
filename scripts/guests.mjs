#!/usr/bin/env node
// `npm run guests`: build the C example guests (guests/c/*.c) with clang and
// lld for riscv32 (Debian's clang and lld packages) into guests/c/*.elf,
// which are committed so that `npm test` needs no compiler.
// `npm run guests -- --check` (CI) builds them afresh in a temporary
// directory and fails if any loaded segment differs from the committed ELF:
// the build is reproducible (no .comment, no build ids, no debug info or
// paths, symbols stripped), so a difference means a stale ELF.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const check = process.argv.includes("--check");
const sdk = join(root, "guests/sdk");
const FLAGS = [
  "--target=riscv32", "-march=rv32im", "-mabi=ilp32", "-mno-relax", "-O2",
  "-ffreestanding", "-nostdlib", "-static", "-fno-ident", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g0",
  "-Wall", "-Wextra", "-Werror",
  "-fuse-ld=lld", `-Wl,-T,${join(sdk, "guest.ld")}`, "-Wl,--build-id=none", "-Wl,-z,norelro", "-Wl,-s",
];

/** The PT_LOAD segments of an ELF32: address, size in memory, and the bytes in the file. */
function segments(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const phoff = v.getUint32(28, true);
  const phentsize = v.getUint16(42, true);
  const phnum = v.getUint16(44, true);
  const out = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (v.getUint32(o, true) !== 1) continue; // PT_LOAD
    const offset = v.getUint32(o + 4, true);
    const filesz = v.getUint32(o + 16, true);
    out.push({ vaddr: v.getUint32(o + 8, true), memsz: v.getUint32(o + 20, true), data: Buffer.from(bytes.subarray(offset, offset + filesz)).toString("hex") });
  }
  return out;
}

const sources = readdirSync(join(root, "guests/c")).filter((f) => f.endsWith(".c")).sort();
const outDir = check ? mkdtempSync(join(tmpdir(), "kemari-guests-")) : join(root, "guests/c");
let stale = 0;
try {
  for (const src of sources) {
    const name = src.replace(/\.c$/, "");
    const out = join(outDir, `${name}.elf`);
    // Relative paths and the repository as the working directory: nothing of this machine ends up in the file.
    execFileSync("clang", [...FLAGS, "-o", out, "guests/sdk/start.c", `guests/c/${src}`], { cwd: root, stdio: "inherit" });
    if (!check) {
      console.log(`built guests/c/${name}.elf (${readFileSync(out).length} bytes)`);
      continue;
    }
    const committed = segments(readFileSync(join(root, "guests/c", `${name}.elf`)));
    const fresh = segments(readFileSync(out));
    const same = JSON.stringify(committed) === JSON.stringify(fresh);
    console.log(`${same ? "ok  " : "STALE"} guests/c/${name}.elf: ${fresh.length} loaded segments${same ? ", as committed" : " differ from the committed ELF: run npm run guests and commit"}`);
    if (!same) stale++;
  }
} finally {
  if (check) rmSync(outDir, { recursive: true, force: true });
}
if (stale > 0) process.exit(1);
