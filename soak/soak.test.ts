/**
 * `npm run soak`: load with faults, bounded in time, loopback only (inside
 * workerd). GUESTS counter services (mode kemari and remus, alternating), one
 * client each sending increments and retrying until answered, while a chaos
 * loop crashes primaries and secondaries at random. At the end every
 * acknowledged increment must be present exactly once — in the replies and in
 * the disk log — and every guest protected again.
 */
import { env } from "cloudflare:workers";
import { expect, it } from "vitest";
import counter from "../guests/counter.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import { ApiError } from "../src/client.ts";
import { client, createGuest, diskBytes, outbound, status, type FaultBody } from "../test/helpers/api.ts";
import { sleep, words } from "../test/helpers/guests.ts";

// Tunables come in as bindings (vitest.soak.config.ts passes the SOAK_* environment variables).
const knobs = env as unknown as Record<string, string | undefined>;
const GUESTS = Number(knobs.SOAK_GUESTS ?? 50);
const SECONDS = Number(knobs.SOAK_SECONDS ?? 60);
const FAULT_EVERY_MS = Number(knobs.SOAK_FAULT_EVERY_MS ?? 700);

async function waitStatus(id: string, pred: (s: GuestStatus) => boolean, ms: number): Promise<GuestStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    // A status the API refuses (the guest mid-takeover) is asked again.
    const s = await client.status(id).catch((e: unknown) => {
      if (e instanceof ApiError) return null;
      throw e;
    });
    if (s && pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`guest ${id} did not settle`);
    await sleep(50);
  }
}

it(`soak: ${GUESTS} guests, ${SECONDS} s, faults every ${FAULT_EVERY_MS} ms`, async () => {
  const heartbeat = { intervalMs: 100, timeoutMs: 1000 };
  const guests = await Promise.all(
    Array.from({ length: GUESTS }, (_, i) => createGuest({ asm: counter }, { mode: i % 2 ? "remus" : "kemari", heartbeat, name: `soak-${i}` })),
  );
  for (const g of guests) await waitStatus(g.id, (s) => s.state === "waiting" && s.devices.length === 4, 30_000);

  const stopAt = Date.now() + SECONDS * 1000;
  let requests = 0;
  let retries = 0;
  let faults = 0;
  const acked = new Map<string, Map<number, number>>(); // guest → seq → counter

  const counterClient = async (id: string) => {
    const mine = new Map<number, number>();
    acked.set(id, mine);
    let cursor = 0;
    const seen = new Map<number, number>();
    for (let seq = 1; Date.now() < stopAt; seq++) {
      requests++;
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) retries++;
        // Refused (the primary is failing over): the retry below sends it again, as a client would.
        await client.send(id, new Uint8Array(new Uint32Array([1, seq]).buffer)).catch((e: unknown) => {
          if (!(e instanceof ApiError)) throw e;
        });
        const deadline = Date.now() + 1500;
        while (!seen.has(seq) && Date.now() < deadline) {
          const got = await outbound(id, cursor);
          for (const p of got) {
            const [client, s, value] = words(p.data);
            expect(client).toBe(1);
            if (seen.has(s)) expect(seen.get(s), `guest ${id}: seq ${s} answered with two values`).toBe(value);
            seen.set(s, value);
            cursor = p.index + 1;
          }
          if (!seen.has(seq)) await sleep(25);
        }
        if (seen.has(seq)) break;
        if (Date.now() > stopAt + 30_000) throw new Error(`guest ${id}: seq ${seq} never answered`);
      }
      mine.set(seq, seen.get(seq)!);
    }
  };

  const chaos = async () => {
    while (Date.now() < stopAt) {
      await sleep(FAULT_EVERY_MS);
      const g = guests[Math.floor(Math.random() * guests.length)];
      const s = await status(g.id);
      if (s.protection !== "protected") continue; // one failure at a time per guest
      const target = Math.random() < 0.6 ? "primary" : "secondary";
      const at = ["now", "before-transfer", "mid-transfer", "after-ack", "after-release"][Math.floor(Math.random() * 5)];
      const accepted = await client.fault(g.id, { target, kind: "crash", at: at as FaultBody["at"] }).then(() => true, (e: unknown) => {
        if (e instanceof ApiError) return false; // no secondary right now, say
        throw e;
      });
      if (accepted) faults++;
    }
  };

  await Promise.all([...guests.map((g) => counterClient(g.id)), chaos()]);

  // Every acknowledged increment exactly once, in the replies and on disk; every guest protected.
  let lost = 0;
  let failovers = 0;
  for (const g of guests) {
    const mine = acked.get(g.id)!;
    const values = [...mine.values()].sort((a, b) => a - b);
    const expected = Array.from({ length: values.length }, (_, i) => i + 1);
    if (JSON.stringify(values) !== JSON.stringify(expected)) lost++;
    const s = await waitStatus(g.id, (x) => x.protection === "protected" && x.state === "waiting", 30_000);
    failovers += s.failovers.length;
    if (values.length > 0) {
      const log = await diskBytes(g.id, 1, values.length);
      for (let i = 0; i < values.length; i++) {
        const [value, , seq] = words(log.subarray(i * 512, i * 512 + 12));
        if (value !== i + 1 || mine.get(seq) !== value) lost++;
      }
    }
  }
  console.log(`SOAK guests=${GUESTS} seconds=${SECONDS} requests=${requests} retries=${retries} faults=${faults} failovers=${failovers} lost=${lost}`);
  expect(lost).toBe(0);
  for (const g of guests) await client.remove(g.id).catch(() => undefined);
});
