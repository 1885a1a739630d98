/**
 * The guest list at scale (#13, item 2): `GET /api/guests?limit=&cursor=`
 * pages newest first through summaries the switches keep in a sharded
 * directory (src/api/directory.ts), calling no guest. With 10,000 guests'
 * entries a page of 100 comes back within 50 ms; following the cursors while
 * other guests are created and deleted lists every guest present throughout
 * exactly once; and a guest's summary follows its coarse changes.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { addGuest, DIRECTORY_SHARDS, removeGuest, shardOf } from "../src/api/directory.ts";
import type { GuestSummary } from "../src/api/summary.ts";
import hello from "../guests/hello.s";
import { call, createGuest, fault, json, waitFor } from "./helpers/api.ts";

type Page = { guests: GuestSummary[]; next: string | null };
const page = async (query: string) => json<Page>(await call("GET", `/api/guests?${query}`), 200);

function entry(n: number, createdAt: number): GuestSummary {
  const id = `g-${n.toString(16).padStart(12, "0")}`;
  return { id, name: `bulk ${n}`, createdAt, mode: "kemari", generation: 0, protection: "protected", state: "running" };
}

async function addAll(entries: GuestSummary[]): Promise<void> {
  for (let i = 0; i < entries.length; i += 250) await Promise.all(entries.slice(i, i + 250).map((e) => addGuest(env, e)));
}

describe("the guest list, paginated and sharded", () => {
  it("10,000 entries: a page of 100 within 50 ms; the cursors list each guest present throughout exactly once while others come and go", async () => {
    const base = 1_000_000_000_000;
    const initial = Array.from({ length: 10_000 }, (_, n) => entry(n + 1, base + n * 10));
    await addAll(initial);
    // Spread over every shard.
    const perShard = new Array<number>(DIRECTORY_SHARDS).fill(0);
    for (const e of initial) perShard[shardOf(e.id)]++;
    expect(Math.min(...perShard)).toBeGreaterThan(10_000 / DIRECTORY_SHARDS / 2);

    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const p = await page("limit=100");
      times.push(performance.now() - t0);
      expect(p.guests).toHaveLength(100);
    }
    times.sort((a, b) => a - b);
    console.log(`a page of 100 among 10,000 entries: ${times.map((t) => t.toFixed(1)).join(", ")} ms`);
    expect(times[2], `page of 100 among 10,000: ${times.map((t) => t.toFixed(1)).join(", ")} ms`).toBeLessThanOrEqual(50);

    const deleted = new Set<string>();
    const seen = new Map<string, number>();
    let cursor: string | null = null;
    let pages = 0;
    let extra = 20_000;
    do {
      const p: Page = await page(`limit=100${cursor ? `&cursor=${cursor}` : ""}`);
      for (const g of p.guests) seen.set(g.id, (seen.get(g.id) ?? 0) + 1);
      // Meanwhile: 20 new guests (newer than any cursor) and 10 deleted, some listed already, some not yet.
      await addAll(Array.from({ length: 20 }, () => entry(++extra, Date.now() - 3_600_000 + extra)));
      for (let k = 0; k < 10; k++) {
        const victim = initial[(pages * 997 + k * 131) % initial.length].id;
        if (deleted.has(victim)) continue;
        deleted.add(victim);
        await removeGuest(env, victim);
      }
      cursor = p.next;
      pages++;
    } while (cursor && pages < 200);
    expect(cursor).toBeNull();
    const throughout = initial.filter((e) => !deleted.has(e.id));
    for (const e of throughout) expect(seen.get(e.id), e.id).toBe(1);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    // Newest first, in the first pages' order.
    const first = await page("limit=3");
    expect(first.guests[0].createdAt).toBeGreaterThanOrEqual(first.guests[1].createdAt);
  });

  it("a guest's summary follows its coarse changes: mode, halted, a takeover's generation", async () => {
    const g = await createGuest({ asm: hello }, { name: "summary", heartbeat: { intervalMs: 20, timeoutMs: 300 } });
    const listed = async () => (await page("limit=20")).guests.find((x) => x.id === g.id);
    expect(await listed()).toMatchObject({ name: "summary", mode: "kemari", generation: 0 });
    await waitFor(g.id, (s) => s.state === "halted");
    await expect.poll(async () => (await listed())?.state).toBe("halted");
    await fault(g.id, { target: "primary", kind: "crash" });
    await waitFor(g.id, (s) => s.generation === 1 && s.protection === "protected", 15_000);
    await expect.poll(async () => (await listed())?.generation).toBe(1);
  });

  it("refuses a cursor it did not give, and a page over 500, naming the field", async () => {
    const bad = await call("GET", "/api/guests?cursor=not-a-cursor");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { field: string }).field).toBe("cursor");
    const big = await call("GET", "/api/guests?limit=501");
    expect(((await big.json()) as { field: string }).field).toBe("limit");
  });
});
