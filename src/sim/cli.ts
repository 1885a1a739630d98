/**
 * `npm run sim -- [--seeds N] [--from S] [--seed S] [--trace] [--mode kemari|remus] [--guest G] [--mutation M]`
 *
 * Runs N seeded simulations (from seed S on), prints seeds/s and every
 * violation; a failing seed prints its trace (with --trace, or the first
 * failure's) and the one command that replays it. Exit code 1 on any
 * violation. scripts/sim.mjs parses the arguments and calls `main`.
 */
import { mutations, type MutationName } from "../protocol/mutations.ts";
import { measureMemory } from "./memory.ts";
import { simulate, type SimGuest, type SimResult } from "./simulate.ts";

export interface SimArgs {
  seeds: string;
  from: string;
  seed?: string;
  trace: boolean;
  mode?: string;
  guest?: string;
  mutation?: string;
  memory?: boolean;
  pages?: string;
}

/** Run the seeds `values` asks for; resolves to the number of failing seeds. */
export async function main(values: SimArgs): Promise<number> {
  if (values.memory) {
    const f = await measureMemory(Number(values.pages ?? 16384));
    const limit = 128 * 1e6 / (1 << 20);
    console.log(`a full checkpoint of a ${f.guestMiB} MiB guest (${f.frames} frames): primary peak ${f.primaryPeakMiB.toFixed(1)} MiB, secondary peak ${f.secondaryPeakMiB.toFixed(1)} MiB (the platform's limit: 128 MB = ${limit.toFixed(1)} MiB per isolate)`);
    console.log(`a pipelined checkpoint of nearly all of it, the guest rewriting every page while it crosses: primary peak ${f.pipelinedPeakMiB.toFixed(1)} MiB, of which ${f.keptPeakMiB.toFixed(1)} MiB kept copy-on-write`);
    return 0;
  }
  if (values.mutation) {
    if (!(values.mutation in mutations)) throw new Error(`--mutation: one of ${Object.keys(mutations).join(", ")}`);
    mutations[values.mutation as MutationName] = true;
}
const opts = { mode: values.mode as "kemari" | "remus" | undefined, guest: values.guest as SimGuest | undefined };
const first = Number(values.seed ?? values.from);
const count = values.seed ? 1 : Number(values.seeds);
const t0 = performance.now();
const failed: SimResult[] = [];
let faults = 0;
let takeovers = 0;
for (let s = first; s < first + count; s++) {
  const r = await simulate(s, opts);
  faults += r.stats.faults;
  takeovers += r.stats.takeovers;
  if (r.violations.length > 0) {
    failed.push(r);
    console.log(`seed ${s} (${r.guest}, ${r.mode}): ${r.violations.length} violation(s)\n  ${r.violations.join("\n  ")}`);
    const flags = [values.mutation ? `--mutation ${values.mutation}` : "", `--seed ${s}`, "--trace"].filter(Boolean).join(" ");
    console.log(`  replay: npm run sim -- ${flags}`);
  }
  if (values.trace) console.log(r.trace.join("\n"));
  if ((s - first + 1) % 1000 === 0) console.log(`… ${s - first + 1} seeds, ${((s - first + 1) / ((performance.now() - t0) / 1000)).toFixed(1)} seeds/s`);
}
const secs = (performance.now() - t0) / 1000;
console.log(`${count} seeds (${first}..${first + count - 1}) in ${secs.toFixed(1)} s: ${(count / secs).toFixed(1)} seeds/s; ${faults} faults injected, ${takeovers} takeovers; violations: ${failed.length}`);
if (failed.length > 0 && !values.trace) console.log(`first failing seed's trace:\n${failed[0].trace.slice(-60).join("\n")}`);
return failed.length;
}
