/** Shared by the tests, benchmarks and soak: tuning example guests and reading their words. */

/** Replace `.equ NAME, value` lines in an example's source: its tunables. A name it lacks is an error. */
export function tune(source: string, values: Record<string, number>): string {
  let s = source;
  for (const [k, v] of Object.entries(values)) {
    const re = new RegExp(`^\\.equ ${k}, \\d+`, "m");
    if (!re.test(s)) throw new Error(`${k} is not a tunable of this guest`);
    s = s.replace(re, `.equ ${k}, ${v}`);
  }
  return s;
}

/** Little-endian u32s as bytes (a request packet). */
export const u32s = (...v: number[]) => new Uint8Array(new Uint32Array(v).buffer);

/** Bytes as little-endian u32s (a reply packet, a disk record); any alignment. */
export const words = (b: Uint8Array) => [...new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + (b.byteLength & ~3)))];

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A guest that computes forever, with no event at all. */
export const SPIN = "_start:\n  li s0, 0\n1: addi s0, s0, 1\n  j 1b\n";

/**
 * Assembly for a test guest's start: connect the console (device kind 0) on
 * port CONSOLE_PORT (1), its ring at the guest's label `ring`. The guest goes
 * on from the next line.
 */
export const CONSOLE_START = `.equ CONSOLE_PORT, 1
_start:
    li   a0, 0
    la   a1, ring
    li   a2, CONSOLE_PORT
    li   a7, 3
    ecall
`;
