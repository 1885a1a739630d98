/**
 * Deleting a guest answers at once and frees its hosts' space afterwards
 * (durable-objects/guest-host.ts destroy): a batch of rows per timer turn,
 * and the alarm finishes a wipe that eviction interrupted.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import stress from "../guests/stress.s?raw";
import { call, createGuest, waitFor } from "./helpers/api.ts";

const ns = (env as unknown as { HOST: DurableObjectNamespace }).HOST;
const hostOf = (name: string) => ns.get(ns.idFromName(name));

/** Rows in a host's tables (0 once its storage is wiped: deleteAll drops the tables too). */
async function rowsOf(name: string): Promise<number> {
  return runInDurableObject(hostOf(name), (_instance, state) => {
    const tables = state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").toArray();
    return tables.reduce((n, t) => n + state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM "${t.name}"`).one().n, 0);
  });
}

async function until(done: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("deleting a guest frees its hosts' space after answering", () => {
  it("a protected guest with 2,000 pages held by its secondary and its primary's idle save: every row goes", async () => {
    const src = stress.replace(/^\.equ PAGES, \d+/m, ".equ PAGES, 2000").replace(/^\.equ REGION, \d+/m, ".equ REGION, 2000").replace(/^\.equ ROUNDS, \d+/m, ".equ ROUNDS, 2");
    const g = await createGuest({ asm: src }, { mode: "kemari", memoryPages: 4096 });
    const s = await waitFor(g.id, (x) => x.state === "halted" && (x.sync?.syncs ?? 0) >= 2, 20_000);
    const names = [s.hosts.primary.name, s.hosts.secondary!.name];
    expect(await rowsOf(names[1])).toBeGreaterThan(2000);
    expect((await call("DELETE", `/api/guests/${g.id}`)).status).toBe(204);
    expect((await call("GET", `/api/guests/${g.id}`)).status).toBe(404);
    // Sooner than the backstop alarm (5 s): the wipe that follows the answer did it.
    for (const name of names) await until(async () => (await rowsOf(name)) === 0, 4000);
  });

  it("a wipe cut short (its object evicted) is finished by the alarm", async () => {
    const g = await createGuest({ asm: "_start:\n  j _start\n" }, { mode: "kemari", memoryPages: 64 });
    const s = await waitFor(g.id, (x) => (x.sync?.syncs ?? 0) >= 1 && x.protection === "protected");
    const secondary = s.hosts.secondary!.name;
    expect((await call("DELETE", `/api/guests/${g.id}`)).status).toBe(204);
    await until(async () => (await rowsOf(secondary)) === 0);
    // As if evicted mid-wipe: a fresh instance (its tables made again), no guest, pages left over, the backstop alarm set.
    await evictDurableObject(hostOf(secondary));
    await runInDurableObject(hostOf(secondary), async (_instance, state) => {
      for (let i = 0; i < 1500; i++) state.storage.sql.exec("INSERT INTO replica_pages (idx, ver, data) VALUES (?, 1, ?)", i, new Uint8Array(64));
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await rowsOf(secondary)).toBe(1500);
    expect(await runDurableObjectAlarm(hostOf(secondary))).toBe(true);
    expect(await rowsOf(secondary)).toBe(0);
  });
});
