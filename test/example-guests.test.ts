/**
 * guests/streamer.s and guests/workload.s: run to the end through the API in
 * mode none, as a user would, and on a plain GuestRunner where the test needs
 * to hold the backend back or count instructions.
 */
import { describe, expect, it } from "vitest";
import streamer from "../guests/streamer.s?raw";
import workload from "../guests/workload.s?raw";
import type { Disk, Output } from "../src/devices/backend.ts";
import { GuestRunner } from "../src/host/runner.ts";
import { assemble } from "../src/image/assembler.ts";
import { consoleText, createGuest, diskBytes, outbound, waitFor } from "./helpers/api.ts";
import { tune, words } from "./helpers/guests.ts";

/** A tunable's value in an example's source, as shipped. */
function tunable(source: string, name: string): number {
  const m = new RegExp(`^\\.equ ${name}, (\\d+)`, "m").exec(source);
  if (!m) throw new Error(`${name} is not a tunable`);
  return Number(m[1]);
}

/** A plain runner (mode none, no Durable Objects) with `source` loaded and an in-memory disk. */
function plainRunner(source: string) {
  const disk: Disk = {
    sectors: 2048,
    read: (sector, count) => new Uint8Array(count * 512),
    write: async () => {},
  };
  const released: Output[] = [];
  const runner = new GuestRunner(256, disk, async (outs) => void released.push(...outs));
  runner.load(assemble(source));
  return { runner, m: runner.machine, released };
}

/** What streamer.s sends as packet n: u32 n, then byte i = i mod 256. */
function expectedPacket(n: number): number[] {
  const p = Array.from({ length: 512 }, (_, i) => i & 255);
  p.splice(0, 4, n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24);
  return p;
}

describe("guests/streamer.s", () => {
  it("sends PACKETS packets of 512 bytes, numbered in order, one NOTIFY each, then halts with 0", async () => {
    const g = await createGuest({ asm: tune(streamer, { PACKETS: 200 }) }, { mode: "none" });
    const s = await waitFor(g.id, (s) => s.state === "halted");
    expect(s.exitCode).toBe(0);
    const got = await outbound(g.id);
    expect(got.map((p) => p.index)).toEqual([...Array(200).keys()]);
    for (const p of got) {
      expect(p.data.length).toBe(512);
      expect(words(p.data)[0]).toBe(p.index);
    }
    expect([...got[0].data]).toEqual(expectedPacket(0));
    expect([...got[199].data]).toEqual(expectedPacket(199));
    expect(s.counters).toMatchObject({ events: 200, packetsOut: 200 });
  });

  it("keeps up to 64 packets in flight and reuses slots as their responses come back", async () => {
    // Drive the machine by hand and let the backend work only when the guest
    // has nothing left to do but WAIT: a NIC slower than the driver.
    const { runner, m, released } = plainRunner(tune(streamer, { PACKETS: 200 }));
    const ring = assemble(streamer).symbols.tx_ring;
    const inFlight = () => m.memory.readU32(ring) - m.memory.readU32(ring + 8);
    let notifies = 0;
    let waits = 0;
    let most = 0;
    while (m.state === "running" || m.state === "waiting") {
      if (m.state === "waiting") {
        if (++waits > 100) throw new Error("the guest waits with nothing in flight");
        await runner["backends"][3]!.notify(); // sends everything posted, raises the port
        continue;
      }
      const r = m.run(1_000_000);
      if (r.kind === "notify") {
        notifies++;
        most = Math.max(most, inFlight());
      }
    }
    expect(m.state).toBe("halted");
    expect(m.exitCode).toBe(0);
    expect(notifies).toBe(200); // one per packet, none per batch
    expect(most).toBe(64); // the ring was full...
    expect(waits).toBe(4); // ...and waited on 4 times: 64 + 64 + 64 + 8
    expect(released.map((o) => o.index)).toEqual([...Array(200).keys()]);
    expect(released.map((o) => words(o.data)[0])).toEqual([...Array(200).keys()]);
    expect([...released[130].data]).toEqual(expectedPacket(130)); // slot 2's buffer, third time round
  });

  it("streams without end when PACKETS is 0", async () => {
    expect(tunable(streamer, "PACKETS")).toBe(0);
    const { runner, m, released } = plainRunner(streamer);
    while (released.length < 1000 && m.runnable) await runner.runSlice(1_000_000);
    expect(m.state).toBe("running");
    expect(released.slice(-3).map((o) => [o.index, words(o.data)[0]])).toEqual(
      released.slice(-3).map((_, i) => [released.length - 3 + i, released.length - 3 + i]),
    );
  });
});

/** workload.s's hash, in TypeScript: each round's sum. */
function workloadSums(rounds: number, iterations: number, wordCount: number): number[] {
  const data = Int32Array.from({ length: wordCount }, (_, i) => Math.imul(i, 0x9e3779b9));
  let h = 0x811c9dc5 | 0;
  const sums: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let it = 0; it < iterations; it++) {
      for (let i = 0; i < wordCount; i++) {
        h = Math.imul(h ^ data[i], 0x01000193);
        data[i] = data[i] + h;
      }
    }
    sums.push(h >>> 0);
  }
  return sums;
}

describe("guests/workload.s", () => {
  // Driver-style (the default: post, go on, reclaim a slot when it is needed), a
  // blocking call per request (WAIT_EACH), and in mode kemari with more rounds than
  // ring slots, so slots are reused while Kemari holds outputs back.
  const cases: { name: string; rounds: number; iterations: number; extra: Record<string, number>; mode: "none" | "kemari" }[] = [
    { name: "as shipped, mode none", rounds: 5, iterations: 3, extra: {}, mode: "none" },
    { name: "WAIT_EACH = 1, mode none", rounds: 5, iterations: 3, extra: { WAIT_EACH: 1 }, mode: "none" },
    { name: "150 rounds (slots reused), mode kemari", rounds: 150, iterations: 1, extra: {}, mode: "kemari" },
  ];
  it.each(cases)("each round writes its record to disk, prints a line and sends a packet; halts with 0 ($name)", async ({ rounds, iterations, extra, mode }) => {
    const g = await createGuest({ asm: tune(workload, { ROUNDS: rounds, ITERATIONS: iterations, ...extra }) }, { mode });
    const s = await waitFor(g.id, (s) => s.state === "halted", 60_000);
    expect(s.exitCode).toBe(0);
    const sums = workloadSums(rounds, iterations, tunable(workload, "WORDS"));

    expect(await consoleText(g.id)).toBe(sums.map((sum, r) => `round ${r} sum ${sum.toString(16).padStart(8, "0")}\n`).join(""));
    const packets = await outbound(g.id);
    expect(packets.map((p) => p.index)).toEqual(sums.map((_, r) => r));
    expect(packets.map((p) => words(p.data))).toEqual(sums.map((sum, r) => [r, sum]));
    const disk = await diskBytes(g.id, 0, rounds + 1);
    expect(Array.from({ length: rounds + 1 }, (_, r) => words(disk.subarray(r * 512, r * 512 + 8)))).toEqual([...sums.map((sum, r) => [r, sum]), [0, 0]]);
    expect(s.counters).toMatchObject({ events: 3 * rounds, outputs: 2 * rounds, packetsOut: rounds });
  }, 90_000);

  it("prints numbers of more than one digit", async () => {
    const { runner, m, released } = plainRunner(tune(workload, { ROUNDS: 12, ITERATIONS: 1 }));
    while (m.runnable) await runner.runSlice(1_000_000);
    const lines = released.filter((o) => o.device === "console").map((o) => new TextDecoder().decode(o.data));
    expect(lines[10]).toMatch(/^round 10 sum [0-9a-f]{8}\n$/);
    expect(lines[11].startsWith("round 11 sum ")).toBe(true);
  });

  it("as shipped: about 500 outputs and 350–400 million instructions", async () => {
    const rounds = tunable(workload, "ROUNDS");
    expect(rounds * 2).toBeGreaterThanOrEqual(450);
    expect(rounds * 2).toBeLessThanOrEqual(550);
    // Two rounds at the shipped ITERATIONS tell the cost of one (the set-up is negligible).
    const { runner, m } = plainRunner(tune(workload, { ROUNDS: 2 }));
    while (m.runnable) await runner.runSlice(1_000_000);
    expect(m.exitCode).toBe(0);
    const total = (m.cpu.instret / 2) * rounds;
    expect(total).toBeGreaterThan(350e6);
    expect(total).toBeLessThan(400e6);
  });
});
