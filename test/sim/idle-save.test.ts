/**
 * Idle saves under the simulator (src/protocol/idle-save.ts): a primary whose
 * guest is idle is restarted — its RAM gone, as an evicted Durable Object's —
 * and resumes in place from its save (same generation, no failover); a later
 * failover to the secondary still finds every page the guest wrote.
 */
import { describe, expect, it } from "vitest";
import echo from "../../guests/echo.s?raw";
import { withMutation } from "../../src/protocol/mutations.ts";
import { HEARTBEAT, simulate, type Scenario, type SimOptions } from "../../src/sim/simulate.ts";
import type { World } from "../../src/sim/world.ts";
import { IDLE_HEARTBEAT_MS } from "../../src/protocol/witness.ts";
import { u32s } from "../helpers/guests.ts";

const HEARTBEAT_TIMEOUT_MS = HEARTBEAT.timeoutMs;

/**
 * echo.s, but each reply carries the first packet's first word in bytes 4..7
 * (0 in the first reply) — kept in a page of its own, written once, after the
 * first reply is out (so after its checkpoint, with no output behind it: an
 * idle guest with a page only it holds until something replicates it), and
 * read by every reply after — and in bytes 8..11 how many packets it has
 * served, this one included (counted in a page of its own).
 */
const REMEMBERING_ECHO = echo
  .replace("    mv   a3, a0                 # send it back", "    la   t0, first\n    lw   t1, 0(t0)\n    la   t2, buffer\n    sw   t1, 4(t2)\n    la   t0, served\n    lw   t1, 0(t0)\n    addi t1, t1, 1\n    sw   t1, 0(t0)\n    sw   t1, 8(t2)\n    mv   a3, a0                 # send it back")
  .replace("    call kick\n    j    serve", "    call kick\n    la   t2, first\n    lw   t1, 0(t2)\n    bnez t1, serve\n    la   t0, buffer\n    lw   t1, 0(t0)\n    sw   t1, 0(t2)\n    j    serve")
  .concat("\n.data\n.balign 4096\nfirst: .word 0\n.balign 4096\nserved: .word 0\n");

const meta = (w: World) => w.witnessDurable.meta!;
const replies = (w: World) => [...w.witnessDurable.packets.values()].map((p) => Array.from(new Uint32Array(p.slice(0, 12).buffer)));

async function run(mode: "kemari" | "remus", opts: Partial<SimOptions> = {}) {
  let resumedInPlace = false;
  let replied: number[][] = [];
  const r = await simulate(1, {
    mode, guest: "hello", source: REMEMBERING_ECHO, faultMs: 6000, calmMs: 3000, ...opts,
    script: async ({ world: w, until, wait }: Scenario) => {
      expect(await until(() => meta(w).protection === "protected"), "protected").toBe(true);
      await w.api((x) => x.onPrimary((h) => h.inbound(u32s(7, 0, 0)), true));
      expect(await until(() => replies(w).length === 1), "first reply").toBe(true);
      // Idle for longer than IDLE_SAVE_MS: the primary saves its guest.
      const primary = meta(w).primary.name;
      expect(await until(() => w.hostInstance(w.host(meta(w).primary)).idleSaved, 3000), "saved").toBe(true);
      // Evicted: RAM gone. The next call finds the save and resumes the guest in place.
      w.crash(primary, "(eviction)");
      const again = w.hostInstance(w.host(meta(w).primary));
      expect(again.role.kind).toBe("primary");
      resumedInPlace = again.role.kind === "primary" && again.role.generation === 0;
      await wait(500);
      expect(meta(w).generation).toBe(0);
      // It serves on, same generation: its next checkpoint carries what changed since the save.
      await w.api((x) => x.onPrimary((h) => h.inbound(u32s(8, 0, 0)), true));
      expect(await until(() => replies(w).length === 2, 3000), "second reply").toBe(true);
      // Then the primary is cut off: the secondary takes over, from what it holds.
      w.host(meta(w).primary).cut = true;
      expect(await until(() => meta(w).generation === 1, 5000), "takeover").toBe(true);
      await w.api((x) => x.onPrimary((h) => h.inbound(u32s(9, 0, 0)), true));
      expect(await until(() => replies(w).length === 3, 5000), "third reply").toBe(true);
      replied = replies(w);
    },
  });
  return { ...r, resumedInPlace, replied };
}

describe.each(["kemari", "remus"] as const)("idle saves (%s)", (mode) => {
  it("an evicted idle primary resumes in place; a later takeover finds every page the guest wrote", async () => {
    const r = await run(mode);
    expect(r.violations, r.trace.filter((l) => !/readDisk|ping/.test(l)).slice(-40).join("\n")).toEqual([]);
    expect(r.resumedInPlace).toBe(true);
    expect(r.replied).toEqual([[7, 0, 1], [8, 7, 2], [9, 7, 3]]);
  });
});

describe("heartbeats of an idle guest", () => {
  it("an idle guest's primary is pinged once every IDLE_HEARTBEAT_MS (2 s); a packet brings the full rate back; an idle primary cut off is failed over within 2 s + the timeout", async () => {
    const at = (l: string) => Number(l.trim().split(" ")[0]);
    const pings = (w: World, from: number, to: number) => w.trace.filter((l) => / witness: ping → /.test(l) && at(l) >= from && at(l) < to).length;
    let idle = 0, busy = 0, detected = 0;
    const checkIns: number[] = [];
    const r = await simulate(1, {
      mode: "kemari", guest: "hello", source: REMEMBERING_ECHO, faultMs: 8000, calmMs: 3000,
      script: async ({ world: w, until, wait }: Scenario) => {
        expect(await until(() => meta(w).protection === "protected"), "protected").toBe(true);
        w.onCall = (_from, what) => void (what === "checkIn" && checkIns.push(w.now));
        await wait(1500);
        const t = w.now;
        await wait(3000);
        idle = pings(w, t, t + 3000);
        const t2 = w.now;
        await w.api((x) => x.onPrimary((h) => h.inbound(u32s(7, 0, 0)), true));
        await wait(150 - (w.now - t2));
        // Watched at the full rate again: a ping, or the running primary's check-in (its sign of life).
        busy = pings(w, t2, t2 + 150) + checkIns.filter((x) => x >= t2 && x < t2 + 150).length;
        await wait(2000);
        const cut = w.now;
        w.host(meta(w).primary).cut = true;
        expect(await until(() => meta(w).generation === 1, 6000), "takeover").toBe(true);
        detected = w.now - cut;
      },
    });
    expect(r.violations).toEqual([]);
    // Idle: a ping every 2 s (the interval is 100 ms here: 30 in 3 s at the full rate).
    expect(IDLE_HEARTBEAT_MS).toBe(2000);
    expect(idle).toBeGreaterThanOrEqual(1);
    expect(idle).toBeLessThanOrEqual(2);
    // The packet: a sign of life within the interval, not two seconds later.
    expect(busy).toBeGreaterThanOrEqual(1);
    // Detection of an idle primary's silence: the idle rate plus the timeout (and a ping's own wait).
    expect(detected).toBeLessThanOrEqual(IDLE_HEARTBEAT_MS + 2 * HEARTBEAT_TIMEOUT_MS);
  });
});

/** Saved while idle, then it serves a packet, and its host dies before it is idle long enough to be saved again. */
async function staleScenario(mode: "kemari" | "remus") {
  let replied: number[][] = [];
  const r = await simulate(1, {
    mode, guest: "hello", source: REMEMBERING_ECHO, faultMs: 6000, calmMs: 3000,
    script: async ({ world: w, until, wait }: Scenario) => {
      expect(await until(() => meta(w).protection === "protected"), "protected").toBe(true);
      await w.api((x) => x.onPrimary((h) => h.inbound(u32s(7, 0, 0)), true));
      expect(await until(() => w.hostInstance(w.host(meta(w).primary)).idleSaved, 3000), "saved").toBe(true);
      await w.api((x) => x.onPrimary((h) => h.inbound(u32s(8, 0, 0)), true));
      expect(await until(() => replies(w).length === 2, 3000), "second reply").toBe(true);
      // Dies well within the second it would take to be saved again.
      w.crash(meta(w).primary.name, "(crash while the save is stale)");
      await wait(100);
      await w.api((x) => x.onPrimary((h) => h.inbound(u32s(9, 0, 0)), true)).catch(() => undefined);
      await until(() => replies(w).length >= 3, 5000);
      replied = replies(w);
    },
  });
  return { ...r, replied };
}

describe.each(["kemari", "remus"] as const)("a save the guest has run past is never resumed (%s)", (mode) => {
  it("the host dies while its save is stale: it is lost and failed over, and the replies go on as if nothing happened", async () => {
    const r = await staleScenario(mode);
    expect(r.violations, r.trace.filter((l) => !/readDisk|ping/.test(l)).slice(-40).join("\n")).toEqual([]);
    expect(r.replied.slice(0, 3)).toEqual([[7, 0, 1], [8, 7, 2], [9, 7, 3]]);
  });
});

describe("the idle-save mutations are caught", () => {
  it("a save kept after the guest ran on (staleIdleSave): the resumed guest has forgotten a packet", async () => {
    const r = await withMutation("staleIdleSave", () => staleScenario("kemari"));
    expect(r.violations.some((v) => /^transparency/.test(v)), r.violations.join("\n")).toBe(true);
  });

  it("a save made before the secondary holds the guest's pages (idleSaveAhead): the takeover's reply differs", async () => {
    const r = await withMutation("idleSaveAhead", () => run("kemari"));
    expect(r.violations.some((v) => /^transparency/.test(v)), r.violations.join("\n")).toBe(true);
  });
});
