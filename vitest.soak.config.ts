import { defineConfig } from "vitest/config";
import { workers } from "./vitest.workers.ts";

// `npm run soak`: load with faults, bounded in time (SOAK_SECONDS), loopback only.
export default defineConfig({
  plugins: [
    workers({
      SOAK_GUESTS: process.env.SOAK_GUESTS ?? "50",
      SOAK_SECONDS: process.env.SOAK_SECONDS ?? "60",
      SOAK_FAULT_EVERY_MS: process.env.SOAK_FAULT_EVERY_MS ?? "700",
    }),
  ],
  test: {
    include: ["soak/**/*.test.ts"],
    testTimeout: 900_000,
  },
});
