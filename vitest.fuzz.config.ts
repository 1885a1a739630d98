import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// `npm run fuzz`: the decoders' property tests (assembler, ELF loader,
// checkpoint decoder) with FUZZ_SCALE times as many generated cases.
export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: { bindings: { API_TOKEN: "test-token", FUZZ_SCALE: process.env.FUZZ_SCALE ?? "20" } },
    }),
  ],
  test: {
    include: ["test/assembler.test.ts", "test/elf.test.ts", "test/checkpoint.test.ts"],
    testNamePattern: process.env.FUZZ_ALL ? undefined : "propert|fuzz|random|any ",
    testTimeout: 600_000,
  },
});
