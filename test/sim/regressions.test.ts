/**
 * Regression scenarios for the bugs the simulator issue named (#9), each a
 * scripted run of the real protocol under the simulator, with every
 * invariant checked at its end as in a random run.
 */
import { describe, expect, it } from "vitest";
import { simulate, type Scenario, type SimOptions } from "../../src/sim/simulate.ts";
import type { World } from "../../src/sim/world.ts";
import { checkInEveryMs } from "../../src/protocol/liveness.ts";
import { CONSOLE_START, SPIN } from "../helpers/guests.ts";

async function scenario(opts: SimOptions & { script: (s: Scenario) => Promise<void> }) {
  const r = await simulate(1, { faultMs: 4000, calmMs: 4000, ...opts });
  expect(r.violations, r.trace.slice(-40).join("\n")).toEqual([]);
  return r;
}

const meta = (w: World) => w.witnessDurable.meta!;
const role = (w: World, name: string) => w.hostInstance(w.hosts.get(name)!).role;


describe.each(["kemari", "remus"] as const)("regressions (%s)", (mode) => {
  it("bug 4: a compute-bound superseded primary learns of its fencing at its next check-in, with no events", async () => {
    await scenario({
      mode, guest: "hello", source: SPIN, faultMs: 2500, calmMs: 500,
      script: async ({ world: w, until, wait }) => {
        const old = meta(w).primary;
        w.host(old).cut = true;
        expect(await until(() => meta(w).generation === 1, 3000)).toBe(true);
        w.host(old).cut = false;
        const healed = w.now;
        expect(await until(() => role(w, old.name).kind === "fenced", 1000)).toBe(true);
        // Its next check-in (every CHECK_IN_MS while it runs: liveness.ts) plus a round trip.
        expect(w.now - healed).toBeLessThanOrEqual(checkInEveryMs(100) + 40);
        await wait(50);
      },
    });
  });

  it("bug 5: a witness that restarts between saving a takeover and promote resumes it", async () => {
    await scenario({
      mode, guest: "journal",
      script: async ({ world: w, until }) => {
        await until(() => meta(w).protection === "protected");
        w.plan = { call: "promote", nth: 1, after: false };
        w.crash(meta(w).primary.name, "(scenario)");
        expect(await until(() => w.trace.some((l) => l.includes("before promote") && l.includes("(planned)")))).toBe(true);
        expect(await until(() => meta(w).generation === 1 && !meta(w).takeover)).toBe(true);
      },
    });
  });

  it("bug 5: a promote that fails transiently is retried, not taken for loss", async () => {
    await scenario({
      mode, guest: "journal",
      script: async ({ world: w, until, wait }) => {
        await until(() => meta(w).protection === "protected");
        const secondary = w.host(meta(w).secondary!);
        secondary.cutFromWitness = true;
        w.crash(meta(w).primary.name, "(scenario)");
        expect(await until(() => !!meta(w).takeover)).toBe(true);
        await wait(300);
        expect(meta(w).lost).toBeNull();
        secondary.cutFromWitness = false;
        expect(await until(() => !meta(w).takeover && meta(w).generation === 1)).toBe(true);
      },
    });
  });

  it("bug 5: a primary that dies right after a new secondary acknowledged its full checkpoint leaves that secondary to take over", async () => {
    await scenario({
      mode, guest: "counter",
      script: async ({ world: w, until }) => {
        await until(() => meta(w).protection === "protected");
        // The secondary is cut off; the primary re-protects into a fresh host, and dies before it can tell the witness.
        w.plan = { call: "secondaryReady", nth: 2, after: false };
        w.host(meta(w).secondary!).cut = true;
        expect(await until(() => w.trace.some((l) => l.includes("before secondaryReady") && l.includes("(planned)")))).toBe(true);
        expect(await until(() => meta(w).generation === 1)).toBe(true);
        expect(meta(w).lost).toBeNull();
      },
    });
  });

  it("review: after many failed re-protections, the last secondary that held a whole copy still takes over", async () => {
    await scenario({
      mode, guest: "counter",
      script: async ({ world: w, until, wait }) => {
        await until(() => meta(w).protection === "protected");
        const s1 = w.host(meta(w).secondary!);
        // S1 is cut off, and so is every secondary the primary tries next, once the witness has
        // initialised it and the primary starts its full checkpoint: many replacements, none whole.
        s1.cut = true;
        const fresh: string[] = [];
        const watchCommits = w.onNewHost;
        w.onNewHost = (h) => {
          watchCommits?.(h);
          fresh.push(h.place.name);
        };
        w.onCall = (from, what) => {
          const to = what.startsWith("receive → ") ? what.slice("receive → ".length) : null;
          if (to && fresh.includes(to)) w.hosts.get(to)!.cut = true;
        };
        expect(await until(() => fresh.length >= 10, 5000)).toBe(true);
        w.crash(meta(w).primary.name, "(scenario)");
        await wait(200);
        s1.cut = false;
        expect(await until(() => meta(w).generation === 1, 3000)).toBe(true);
        expect(meta(w).lost).toBeNull();
        expect(meta(w).primary.name).toBe(s1.place.name);
        w.onNewHost = watchCommits;
        w.onCall = null;
        for (const name of fresh) w.hosts.get(name)!.cut = false;
        expect(await until(() => meta(w).protection === "protected", 3000)).toBe(true);
      },
    });
  });

  it("bug 6: deleting a guest during a takeover", async () => {
    const r = await simulate(1, {
      mode, guest: "journal", faultMs: 2000, calmMs: 0,
      script: async ({ world: w, until, wait }) => {
        await until(() => meta(w).protection === "protected");
        let deleted: Promise<unknown> | null = null;
        const check = w.beforePromote;
        w.beforePromote = (h, g) => {
          check?.(h, g);
          deleted ??= w.api((x) => x.destroy());
        };
        w.crash(meta(w).primary.name, "(scenario)");
        expect(await until(() => deleted !== null)).toBe(true);
        await deleted;
        await wait(500);
        expect(w.witnessDurable.meta).toBeNull();
      },
    });
    expect(r.trace.filter((l) => l.includes("threw"))).toEqual([]);
    expect(r.violations.filter((v) => !v.startsWith("liveness: the guest was never created"))).toEqual([]);
  });

  it("7: every host restarting at once (a deploy) resumes the guest from the newest acknowledged copy", async () => {
    await scenario({
      mode, guest: "counter",
      script: async ({ world: w, until }) => {
        await until(() => meta(w).protection === "protected");
        for (let i = 0; i < 3; i++) {
          await until(() => w.witnessDurable.packets.size > i * 2, 3000);
          const g = meta(w).generation;
          w.restartAllHosts();
          expect(await until(() => meta(w).generation > g && meta(w).protection === "protected", 3000)).toBe(true);
        }
      },
    });
  });

  it("7: every host restarting at once inside a re-protection window still resumes the guest", async () => {
    await scenario({
      mode, guest: "counter",
      script: async ({ world: w, until }) => {
        await until(() => meta(w).protection === "protected");
        // Take over; restart every host just as the new primary starts sending its new secondary
        // the full checkpoint: the only whole copy is the one the new primary was promoted from.
        let restarted = false;
        w.onCall = (from, what) => {
          if (restarted || meta(w).generation !== 1 || from !== meta(w).primary.name || !what.startsWith("receive")) return;
          restarted = true;
          w.restartAllHosts();
        };
        w.crash(meta(w).primary.name, "(scenario)");
        expect(await until(() => restarted, 3000)).toBe(true);
        expect(await until(() => meta(w).generation === 2, 3000)).toBe(true);
        expect(meta(w).lost).toBeNull();
        expect(await until(() => meta(w).protection === "protected", 3000)).toBe(true);
      },
    });
  });
});

describe("Remus's pipeline of epochs (#10)", () => {
  /** A guest that dirties a page and prints a line every few thousand instructions, forever. */
  const BUSY = `
${CONSOLE_START}    li   s0, 0
loop:
    li   s1, 3000
1:  addi s1, s1, -1
    la   t0, scratch
    sw   s1, 0(t0)
    bnez s1, 1b
    addi s0, s0, 1
    la   t3, ring
    lw   t0, 0(t3)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, t3
    sw   t0, 0x40(t1)
    sw   zero, 0x44(t1)
    la   t2, dot
    sw   t2, 0x48(t1)
    li   t2, 1
    sw   t2, 0x4c(t1)
    addi t0, t0, 1
    sw   t0, 0(t3)
    li   a0, CONSOLE_PORT
    li   a7, 1
    ecall
    j    loop
.data
dot: .ascii "."
.align 12
ring: .space 4096
scratch: .space 4096
`;

  it("keeps several epochs in flight over a long link, within its window, and releases their outputs in order", async () => {
    let most = 0;
    const r = await scenario({
      mode: "remus", guest: "hello", source: BUSY, latency: { rttMs: 160 }, faultMs: 2000, calmMs: 1000,
      script: async ({ world: w, wait }) => {
        for (let t = 0; t < 1500; t += 5) {
          const role = w.hostInstance(w.hosts.get(meta(w).primary.name)!).role;
          if (role.kind === "primary") most = Math.max(most, role.primary.epochsInFlight);
          await wait(5);
        }
      },
    });
    // 160 ms round trip, 20 ms epochs: a window of 9, and the guest never waits for a landing.
    expect(most).toBeGreaterThanOrEqual(5);
    expect(most).toBeLessThanOrEqual(9);
    expect(r.stats.outputs).toBeGreaterThan(0);
  });

  it("a failed epoch in the middle of the pipeline is sent again stop-and-wait, with everything after it", async () => {
    await scenario({
      mode: "remus", guest: "hello", source: BUSY, latency: { rttMs: 120 },
      script: async ({ world: w, until, wait }) => {
        await until(() => meta(w).protection === "protected");
        await wait(300);
        // Cut the secondary for a moment: the epochs in flight fail; the guest stays protected and nothing is lost.
        const secondary = w.host(meta(w).secondary!);
        secondary.cut = true;
        await wait(150);
        secondary.cut = false;
        expect(await until(() => meta(w).protection === "protected", 4000)).toBe(true);
        await wait(500);
      },
    });
  });
});
