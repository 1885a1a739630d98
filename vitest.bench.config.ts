import { defineConfig } from "vitest/config";
import { workers } from "./vitest.workers.ts";

// `npm run bench` (after the interpreter figures): the Kemari measurements
// and the mode comparison, which need Durable Objects.
export default defineConfig({
  plugins: [
    // The bench's knobs reach the workerd side as bindings (its process.env is not the shell's).
    workers(Object.fromEntries(["BENCH_ONLY", "BENCH_REPEAT", "BENCH_VERBOSE"].filter((k) => process.env[k]).map((k) => [k, process.env[k]!]))),
  ],
  test: {
    include: ["bench/**/*.bench.ts"],
    fileParallelism: false,
    testTimeout: 600_000,
  },
});
