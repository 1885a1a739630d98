/**
 * How many cases a property test runs: its own count in `npm test`, times
 * FUZZ_SCALE under `npm run fuzz` (vitest.fuzz.config.ts sets the binding).
 */
import { env } from "cloudflare:workers";

const scale = Math.max(1, Number((env as unknown as { FUZZ_SCALE?: string }).FUZZ_SCALE ?? 1) || 1);

export function runs(n: number): number {
  return n * scale;
}
