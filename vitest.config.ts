import { defineConfig } from "vitest/config";
import { workers } from "./vitest.workers.ts";

// Every test runs inside workerd, against the same Worker and Durable Objects
// that `wrangler dev` serves.
export default defineConfig({
  plugins: [workers()],
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
