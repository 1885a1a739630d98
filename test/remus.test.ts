/**
 * Remus's output commit: the guest runs on speculatively through an epoch,
 * and nothing it says is visible outside before the checkpoint of that epoch
 * is acknowledged by the secondary.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import counter from "../guests/counter.s?raw";
import hello from "../guests/hello.s?raw";
import journal from "../guests/journal.s?raw";
import type { GuestStatus } from "../src/host/status.ts";
import { client, consoleText, createGuest, sendPacket, status, waitFor } from "./helpers/api.ts";
import { tune } from "./helpers/guests.ts";

/** The guest has stopped running (its instruction count stands still over a few reads): it has ended, whatever status shows yet. */
async function untilStill(id: string): Promise<GuestStatus> {
  let last = -1;
  let still = 0;
  return waitFor(id, (s) => {
    still = s.instructions === last && s.instructions > 0 ? still + 1 : 0;
    last = s.instructions;
    return still >= 3;
  });
}

describe("mode remus", () => {
  it("holds an epoch's output until its checkpoint is acknowledged, then releases it", async () => {
    const g = await createGuest({ asm: hello }, { mode: "remus", epochMs: 400 });
    expect(g).toMatchObject({ mode: "remus", epochMs: 400, protection: "protected" });
    const secondary = env.HOST.get(env.HOST.idFromName(g.hosts.secondary!.name));
    // The guest finishes within its first epoch: its line written, but held — so it does not
    // read halted yet (a client that sees halted has seen all the output), nor show its exit code.
    const held = await untilStill(g.id);
    expect(held.sync!.heldOutputs).toBe(1);
    // The held line, and the end itself (an output too: it waits for the same epoch).
    expect(held).toMatchObject({ state: "running", exitCode: null, outputsInFlight: 2 });
    expect(await consoleText(g.id)).toBe("");
    // The secondary has not yet been given the epoch that printed it.
    expect((await secondary.replicaStatus()).instructions).toBeLessThan(held.instructions);
    // Poll: the output must never be visible while the secondary lacks the epoch that made it.
    const deadline = Date.now() + 5000;
    for (;;) {
      const text = await consoleText(g.id);
      const replica = await secondary.replicaStatus();
      if (text !== "") {
        expect(text).toBe("Hello from a Kemari guest!\n");
        expect(replica.instructions).toBe(held.instructions);
        break;
      }
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 10));
    }
    const s = await waitFor(g.id, (x) => x.state === "halted");
    expect(s.sync).toMatchObject({ heldOutputs: 0, epochOpen: false });
    expect(s.outputsInFlight).toBe(0);
  });

  it("writes the epoch's disk writes to the secondary's replica only when the epoch commits", async () => {
    const g = await createGuest({ asm: tune(journal, { ROUNDS: 5 }) }, { mode: "remus", epochMs: 400 });
    const secondary = env.HOST.get(env.HOST.idFromName(g.hosts.secondary!.name));
    const done = await untilStill(g.id);
    // The primary's own disk has all five records at once (the guest read them back and ended) ...
    expect(done.state).toBe("running"); // its end waits for the epoch, as its outputs do
    expect(done.sync!.epochOpen).toBe(true);
    // ... the secondary's has none of them until the epoch's checkpoint arrives.
    expect((await secondary.replicaStatus()).sectorsHeld).toBe(0);
    const halted = await waitFor(g.id, (s) => s.state === "halted");
    expect(halted).toMatchObject({ exitCode: 15, outputsInFlight: 0, sync: { epochOpen: false, heldOutputs: 0 } });
    expect((await secondary.replicaStatus()).sectorsHeld).toBe(5);
  });

  it("(so does mode kemari: a disk write travels with the next checkpoint, never ahead of it)", async () => {
    const g = await createGuest({ asm: tune(journal, { ROUNDS: 5 }) }, { mode: "kemari", paused: true });
    const secondary = env.HOST.get(env.HOST.idFromName(g.hosts.secondary!.name));
    const { call } = await import("./helpers/api.ts");
    const sector1 = async (view: string) => new Uint8Array(await (await call("GET", `/api/guests/${g.id}/disk?sector=1&count=1&view=${view}`)).arrayBuffer());
    // Step until the first write (sector 1) is on the primary's live disk.
    for (let i = 0; i < 400 && (await sector1("live")).every((b) => b === 0); i++) {
      await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 5 } });
    }
    expect((await sector1("live")).some((b) => b !== 0)).toBe(true);
    // Not yet checkpointed: the secondary does not hold it, and the default (acknowledged) view does not show it.
    expect((await secondary.replicaStatus()).sectorsHeld).toBe(0);
    expect((await sector1("acked")).every((b) => b === 0)).toBe(true);
    await call("POST", `/api/guests/${g.id}/resume`);
    await waitFor(g.id, (s) => s.state === "halted");
    expect((await secondary.replicaStatus()).sectorsHeld).toBe(5);
  });

  it("a packet taken in while the guest is paused ends its epoch all the same: what it wrote reaches the secondary without a resume", async () => {
    const g = await createGuest({ asm: counter }, { mode: "remus", epochMs: 20 });
    await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 4 && s.dirtyPages === 0 && !s.sync!.epochOpen);
    await client.pause(g.id);
    const before = await waitFor(g.id, (s) => s.state === "paused" && s.dirtyPages === 0);
    // The backend writes the packet into the rx buffer the guest posted: guest memory changes while it is paused.
    await sendPacket(g.id, new Uint8Array(new Uint32Array([1, 7]).buffer));
    const after = await waitFor(g.id, (s) => s.counters.packetsIn === 1 && s.dirtyPages === 0 && s.sync!.syncs > before.sync!.syncs, 3000);
    expect(after.state).toBe("paused");
    expect((await status(g.id)).instructions).toBe(before.instructions);
  });

  it("checkpoints per epoch, not per event", async () => {
    const stress = "_start:\n  li s0, 0\n1: addi s0, s0, 1\n  la t0, buf\n  sw s0, 0(t0)\n  li t1, 3000000\n  blt s0, t1, 1b\n  li a0, 0\n  li a7, 0\n  ecall\n.data\nbuf: .word 0\n";
    const g = await createGuest({ asm: stress }, { mode: "remus", epochMs: 10 });
    const s = await waitFor(g.id, (x) => x.state === "halted" && !x.sync?.epochOpen);
    // A compute-bound guest with no device events at all is still checkpointed every epoch.
    expect(s.sync!.syncs).toBeGreaterThanOrEqual(2);
    const k = await createGuest({ asm: stress }, { mode: "kemari" });
    const ks = await waitFor(k.id, (x) => x.state === "halted");
    // Kemari synchronises only at events: this guest has none after its full checkpoint but its end.
    expect(ks.sync!.syncs).toBe(2);
  });

  it("refuses an epoch outside 5..1000 ms", async () => {
    const { call } = await import("./helpers/api.ts");
    const res = await call("POST", "/api/guests", { body: { image: { asm: hello }, mode: "remus", epochMs: 2 } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { field: string }).field).toBe("epochMs");
  });
});
