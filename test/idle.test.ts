/**
 * Idle guests outlive their host's eviction (src/protocol/idle-save.ts): in
 * every mode, a guest that waits, is paused, halted, crashed or at a
 * breakpoint is saved by its primary, and when the runtime evicts that host
 * (its RAM gone, its storage kept) the guest goes on in place — same
 * generation, no failover — exactly where it was.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import echo from "../guests/echo.s?raw";
import hello from "../guests/hello.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import { call, consoleText, createGuest, fault, outbound, sendPacket, status, waitFor } from "./helpers/api.ts";

const CRASHER = "_start:\n  li t0, 0x7ffffff0\n  lw t1, 0(t0)\n  j _start\n";
const BREAKER = "_start:\n  li s0, 41\n  addi s0, s0, 1\n  ebreak\n  li a0, 0\n  li a7, 0\n  ecall\n";

const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

async function evictPrimary(s: GuestStatus): Promise<void> {
  const ns = env.HOST;
  await evictDurableObject(ns.get(ns.idFromName(s.hosts.primary.name)));
}

describe.each(["none", "kemari", "remus"] as const)("idle guests survive their host's eviction (mode %s)", (mode) => {
  it("waiting, paused, halted, crashed and at a breakpoint: each goes on in place", async () => {
    const ready = (s: GuestStatus) => mode === "none" || s.protection === "protected";
    const waiting = await createGuest({ asm: echo }, { mode });
    const paused = await createGuest({ asm: hello }, { mode, paused: true });
    const halted = await createGuest({ asm: hello }, { mode });
    const crashed = await createGuest({ asm: CRASHER }, { mode });
    const broken = await createGuest({ asm: BREAKER }, { mode });

    // The echo guest serves one packet, then waits for the next.
    await waitFor(waiting.id, (s) => s.state === "waiting" && ready(s));
    await sendPacket(waiting.id, text("one"));
    await waitFor(waiting.id, (s) => s.counters.packetsOut === 1 && s.state === "waiting");

    const before = new Map<string, GuestStatus>();
    const all = { waiting, paused, halted, crashed, broken };
    const states = { waiting: "waiting", paused: "paused", halted: "halted", crashed: "crashed", broken: "breakpoint" } as const;
    for (const [k, g] of Object.entries(all)) {
      // Idle for a moment: saved.
      before.set(k, await waitFor(g.id, (s) => s.state === states[k as keyof typeof states] && ready(s) && s.idleSaved, 15_000));
    }
    for (const g of Object.values(all)) await evictPrimary(before.get(Object.keys(all).find((k) => all[k as keyof typeof all] === g)!)!);

    for (const [k, g] of Object.entries(all)) {
      const s = await status(g.id);
      const b = before.get(k)!;
      // Exactly where it was: same state, instruction count, pc, registers' effects; same generation, no failover.
      expect(s.state, k).toBe(b.state);
      expect(s.instructions, k).toBe(b.instructions);
      expect(s.pc, k).toBe(b.pc);
      expect(s.exitCode, k).toBe(b.exitCode);
      expect(s.crash, k).toEqual(b.crash);
      expect(s.counters, k).toEqual(b.counters);
      expect(s.generation, k).toBe(b.generation);
      expect(s.failovers, k).toEqual([]);
    }

    // And they go on: the echo guest serves the next packet, the paused one runs when resumed, the one at its breakpoint too.
    await sendPacket(waiting.id, text("two"));
    await waitFor(waiting.id, (s) => s.counters.packetsOut === 2 && s.outputsInFlight === 0);
    expect((await outbound(waiting.id)).map((p) => decode(p.data))).toEqual(["one", "two"]);
    expect((await call("POST", `/api/guests/${paused.id}/resume`)).status).toBe(200);
    expect((await waitFor(paused.id, (s) => s.state === "halted")).exitCode).toBe(0);
    expect(await consoleText(paused.id)).toBe(await consoleText(halted.id));
    expect((await call("POST", `/api/guests/${broken.id}/resume`)).status).toBe(200);
    expect((await waitFor(broken.id, (s) => s.state === "halted")).exitCode).toBe(0);
    for (const g of Object.values(all)) expect((await status(g.id)).generation).toBe(0);
    for (const g of Object.values(all)) await call("DELETE", `/api/guests/${g.id}`);
  }, 60_000);
});

describe("a guest evicted while it runs is not resumed from an older save", () => {
  it("mode none: saved while paused, resumed, evicted while it computes: lost, as any unprotected guest that crashes", async () => {
    const g = await createGuest({ asm: "_start:\n  addi s0, s0, 1\n  j _start\n" }, { mode: "none", paused: true });
    const saved = await waitFor(g.id, (s) => s.idleSaved, 10_000);
    expect(saved.instructions).toBe(0);
    expect((await call("POST", `/api/guests/${g.id}/resume`)).status).toBe(200);
    const running = await waitFor(g.id, (s) => s.instructions > 0);
    expect(running.idleSaved).toBe(false);
    // Its host dies under it (evictDurableObject waits for the busy object to drain: a crash is what an eviction mid-run amounts to).
    await fault(g.id, { target: "primary", kind: "crash", at: "now" });
    const s = await waitFor(g.id, (s) => s.state === "crashed");
    // Not the paused guest of the save, at instruction 0: that would run its work again.
    expect(s.state).toBe("crashed");
    expect(s.crash?.reason).toMatch(/lost the guest's memory/);
    await call("DELETE", `/api/guests/${g.id}`);
  });
});

describe("what may not cost a guest its save (review findings)", () => {
  it("a packet to a paused guest: it is saved again, and survives eviction with the packet waiting", async () => {
    const g = await createGuest({ asm: echo }, { mode: "none" });
    await waitFor(g.id, (s) => s.state === "waiting");
    expect((await call("POST", `/api/guests/${g.id}/pause`)).status).toBe(200);
    await waitFor(g.id, (s) => s.idleSaved, 10_000);
    await sendPacket(g.id, text("held"));
    const saved = await waitFor(g.id, (s) => s.idleSaved && s.counters.packetsIn === 1, 10_000);
    await evictPrimary(saved);
    expect((await call("POST", `/api/guests/${g.id}/resume`)).status).toBe(200);
    await waitFor(g.id, (s) => s.counters.packetsOut === 1, 10_000);
    expect((await outbound(g.id)).map((p) => decode(p.data))).toEqual(["held"]);
    await call("DELETE", `/api/guests/${g.id}`);
  });

  it("a refused pause of a halted guest leaves its save", async () => {
    const g = await createGuest({ asm: hello }, { mode: "none" });
    await waitFor(g.id, (s) => s.state === "halted" && s.idleSaved, 10_000);
    expect((await call("POST", `/api/guests/${g.id}/pause`)).status).toBe(409);
    expect((await status(g.id)).idleSaved).toBe(true);
    await call("DELETE", `/api/guests/${g.id}`);
  });

  it("a crash armed for a step that never comes (mode none) clears the save; the next one writes every page again", async () => {
    const g = await createGuest({ asm: echo }, { mode: "none" });
    await waitFor(g.id, (s) => s.state === "waiting" && s.idleSaved, 10_000);
    await fault(g.id, { target: "primary", kind: "crash", at: "after-ack" });
    expect((await status(g.id)).idleSaved).toBe(false);
    await sendPacket(g.id, text("a"));
    const saved = await waitFor(g.id, (s) => s.counters.packetsOut === 1 && s.state === "waiting" && s.idleSaved, 10_000);
    await evictPrimary(saved);
    await sendPacket(g.id, text("b"));
    await waitFor(g.id, (s) => s.counters.packetsOut === 2, 10_000);
    expect((await outbound(g.id)).map((p) => decode(p.data))).toEqual(["a", "b"]);
    expect((await status(g.id)).state).toBe("waiting");
    await call("DELETE", `/api/guests/${g.id}`);
  });
});
