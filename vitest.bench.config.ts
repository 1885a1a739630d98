import { defineConfig } from "vitest/config";
import { workers } from "./vitest.workers.ts";

// `npm run bench` (after the interpreter figures): the Kemari measurements
// and the mode comparison, which need Durable Objects.
export default defineConfig({
  plugins: [workers()],
  test: {
    include: ["bench/**/*.bench.ts"],
    fileParallelism: false,
    testTimeout: 600_000,
  },
});
