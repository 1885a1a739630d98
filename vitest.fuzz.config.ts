import { defineConfig } from "vitest/config";
import { workers } from "./vitest.workers.ts";

// `npm run fuzz`: the decoders' property tests (assembler, ELF loader,
// checkpoint decoder) with FUZZ_SCALE times as many generated cases.
export default defineConfig({
  plugins: [workers({ FUZZ_SCALE: process.env.FUZZ_SCALE ?? "20" })],
  test: {
    include: ["test/assembler.test.ts", "test/elf.test.ts", "test/checkpoint.test.ts"],
    testNamePattern: process.env.FUZZ_ALL ? undefined : "propert|fuzz|random|any ",
    testTimeout: 600_000,
  },
});
