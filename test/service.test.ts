/**
 * Guests that serve the outside world, under failure: the counter service and
 * the echo server, driven by clients that retry until answered, as real
 * clients of a failing-over service do.
 */
import { describe, expect, it } from "vitest";
import counter from "../guests/counter.s?raw";
import echo from "../guests/echo.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import { call, createGuest, diskBytes, fault, outbound, status, waitFor, type FaultBody } from "./helpers/api.ts";
import { sleep, u32s, words } from "./helpers/guests.ts";

const MODES = ["kemari", "remus"] as const;
const HEARTBEAT = { heartbeat: { intervalMs: 20, timeoutMs: 300 } };
const STEPS = ["before-transfer", "mid-transfer", "after-ack", "after-release"] as const;

/** Send a packet; a guest between hosts may answer 503, and a client just tries again. */
async function send(id: string, data: Uint8Array): Promise<void> {
  for (let i = 0; ; i++) {
    const res = await call("POST", `/api/guests/${id}/inbound`, { raw: data, headers: { "content-type": "application/octet-stream" } });
    if (res.status === 202) return;
    expect([503, 410].includes(res.status) && i < 200, `inbound answered ${res.status}: ${await res.text()}`).toBe(true);
    await sleep(10);
  }
}

/** Replies seen so far, by "client:seq" → counter, read from the switch's record of outputs. */
async function replies(id: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const p of await outbound(id)) {
    const [client, seq, value] = words(p.data);
    const key = `${client}:${seq}`;
    // The service answers a repeat with the value it gave the first time.
    if (m.has(key)) expect(m.get(key), `repeat of ${key}`).toBe(value);
    m.set(key, value);
  }
  return m;
}

/** One client request: send, and resend after `retryMs` until the reply is out. */
async function request(id: string, client: number, seq: number, retryMs = 400): Promise<number> {
  const key = `${client}:${seq}`;
  for (let attempt = 0; attempt < 50; attempt++) {
    await send(id, u32s(client, seq));
    const deadline = Date.now() + retryMs;
    while (Date.now() < deadline) {
      const got = (await replies(id)).get(key);
      if (got !== undefined) return got;
      await sleep(5);
    }
  }
  throw new Error(`request ${key} was never answered`);
}

async function counterGuest(mode: string): Promise<GuestStatus> {
  const g = await createGuest({ asm: counter }, { ...HEARTBEAT, mode });
  return waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 4);
}

/** The disk log: sector n holds { counter = n, client, seq } for the n-th increment. */
async function diskLog(id: string, n: number): Promise<number[][]> {
  const bytes = await diskBytes(id, 1, n);
  const out: number[][] = [];
  for (let i = 0; i < n; i++) out.push(words(bytes.subarray(i * 512, i * 512 + 12)));
  return out;
}

/** A fixed script: two clients, three requests each, one after another. */
async function script(id: string): Promise<{ answers: string[]; log: number[][] }> {
  const answers: string[] = [];
  for (let seq = 1; seq <= 3; seq++) {
    for (const client of [5, 9]) answers.push(`${client}:${seq}=${await request(id, client, seq)}`);
  }
  return { answers, log: await diskLog(id, 6) };
}

describe.each(MODES)("mode %s", (mode) => {
  describe("the counter service under failure", () => {
    it("counts every acknowledged increment exactly once while primaries crash", async () => {
      const g = await counterGuest(mode);
      const clients = [1, 2, 3, 4];
      const perClient = 8;
      let answered = 0;
      const crashes: Promise<void>[] = [];
      const chaos = (async () => {
        for (const after of [5, 13, 21]) {
          while (answered < after) await sleep(2);
          const s = await waitFor(g.id, (s) => s.protection === "protected");
          await fault(g.id, { target: "primary", kind: "crash" });
          await waitFor(g.id, (x) => x.generation > s.generation);
        }
      })();
      crashes.push(chaos);
      const results = await Promise.all(
        clients.map(async (client) => {
          const got: number[] = [];
          for (let seq = 1; seq <= perClient; seq++) {
            got.push(await request(g.id, client, seq));
            answered++;
          }
          return got;
        }),
      );
      await Promise.all(crashes);
      const total = clients.length * perClient;
      // Each acknowledged increment has its own counter value: none lost, none counted twice.
      const values = results.flat().sort((a, b) => a - b);
      expect(values).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      for (const got of results) expect(got).toEqual([...got].sort((a, b) => a - b));
      // The disk log agrees: sector n holds the n-th increment, each (client, seq) once.
      const log = await diskLog(g.id, total);
      expect(log.map((r) => r[0])).toEqual(values);
      expect(new Set(log.map((r) => `${r[1]}:${r[2]}`)).size).toBe(total);
      const s = await waitFor(g.id, (x) => x.protection === "protected");
      expect(s.generation).toBe(3);
      expect(s.failovers).toHaveLength(3);
    });

    it.each(STEPS.flatMap((at) => (["primary", "secondary"] as const).map((target) => ({ target, at }))))(
      "answers a fixed script the same with a $target crash at $at",
      async ({ target, at }) => {
        const clean = await counterGuest(mode);
        const expected = await script(clean.id);
        const g = await counterGuest(mode);
        await fault(g.id, { target, kind: "crash", at } as FaultBody);
        expect(await script(g.id)).toEqual(expected);
        if (target === "primary") expect((await status(g.id)).generation).toBe(1);
      },
    );
  });

  describe("the echo server under failure", () => {
    /** Send each payload once its predecessor has come back (resending if it was lost). */
    async function converse(id: string, payloads: string[]): Promise<string[]> {
      for (const p of payloads) {
        const bytes = new TextEncoder().encode(p);
        let back = false;
        for (let attempt = 0; attempt < 50 && !back; attempt++) {
          await send(id, bytes);
          const deadline = Date.now() + 400;
          while (!back && Date.now() < deadline) {
            back = (await outbound(id)).some((x) => new TextDecoder().decode(x.data) === p);
            if (!back) await sleep(5);
          }
        }
        expect(back, `${p} never came back`).toBe(true);
      }
      const seen = (await outbound(id)).map((x) => new TextDecoder().decode(x.data));
      // Indices are the identity: the switch kept each once, in order, with no gap.
      const idx = (await outbound(id)).map((x) => x.index);
      expect(idx).toEqual(idx.map((_, i) => i));
      return seen.filter((p, i) => p !== seen[i - 1]); // a resent packet may come back twice
    }

    it.each(STEPS.flatMap((at) => (["primary", "secondary"] as const).map((target) => ({ target, at }))))(
      "echoes the same conversation with a $target crash at $at",
      async ({ target, at }) => {
        const payloads = ["one", "two", "three", "four"];
        const g = await createGuest({ asm: echo }, { ...HEARTBEAT, mode });
        await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 2);
        await fault(g.id, { target, kind: "crash", at } as FaultBody);
        expect(await converse(g.id, payloads)).toEqual(payloads);
      },
    );
  });
});
