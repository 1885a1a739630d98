/** The example guests under guests/, each checked through the API as a user would. */
import { describe, expect, it } from "vitest";
import counter from "../guests/counter.s?raw";
import echo from "../guests/echo.s?raw";
import hello from "../guests/hello.s?raw";
import stress from "../guests/stress.s?raw";
import { assemble } from "../src/image/assembler.ts";
import { call, consoleText, createGuest, outbound, sendPacket, waitFor } from "./helpers/api.ts";
import { tune, u32s, words } from "./helpers/guests.ts";


/** Wait until the guest has sent at least `n` packets; return them. */
async function packets(id: string, n: number): Promise<{ index: number; data: Uint8Array }[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const got = await outbound(id);
    if (got.length >= n) return got;
    if (Date.now() > deadline) throw new Error(`only ${got.length} of ${n} packets`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("guests/hello.s", () => {
  it("greets and halts with 0", async () => {
    const g = await createGuest({ asm: hello });
    expect((await waitFor(g.id, (s) => s.state === "halted")).exitCode).toBe(0);
    expect(await consoleText(g.id)).toBe("Hello from a Kemari guest!\n");
  });
});

describe("guests/echo.s", () => {
  it("sends every packet back, in order, indexed by its net-tx request", async () => {
    const g = await createGuest({ asm: echo });
    await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 2);
    const sent = ["ping", "kemari", "x".repeat(1500)].map((t) => new TextEncoder().encode(t));
    for (const p of sent) await sendPacket(g.id, p);
    const got = await packets(g.id, 3);
    expect(got.map((p) => p.index)).toEqual([0, 1, 2]);
    expect(got.map((p) => new TextDecoder().decode(p.data))).toEqual(sent.map((p) => new TextDecoder().decode(p)));
    const later = await outbound(g.id, 2);
    expect(later.map((p) => p.index)).toEqual([2]);
    const s = await waitFor(g.id, (s) => s.state === "waiting");
    expect(s.counters).toMatchObject({ packetsIn: 3, packetsOut: 3 });
  });

  it("keeps a packet that arrives before the guest has posted a buffer", async () => {
    const g = await createGuest({ asm: echo });
    await sendPacket(g.id, new TextEncoder().encode("early"));
    const got = await packets(g.id, 1);
    expect(new TextDecoder().decode(got[0].data)).toBe("early");
  });
});

describe("guests/counter.s", () => {
  it("counts each (client, seq) once, answers repeats as before, and logs to disk", async () => {
    const g = await createGuest({ asm: counter });
    await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 4);
    expect(await consoleText(g.id)).toBe("counter service ready\n");

    await sendPacket(g.id, u32s(7, 1));
    await sendPacket(g.id, u32s(9, 1));
    await sendPacket(g.id, u32s(7, 1)); // a retry: must not count again
    await sendPacket(g.id, u32s(7, 2));
    await sendPacket(g.id, u32s(99, 1)); // no such client: ignored
    const replies = (await packets(g.id, 4)).map((p) => words(p.data));
    expect(replies).toEqual([
      [7, 1, 1],
      [9, 1, 2],
      [7, 1, 1],
      [7, 2, 3],
    ]);

    const disk = new Uint8Array(await (await call("GET", `/api/guests/${g.id}/disk?sector=1&count=3`)).arrayBuffer());
    const log = [0, 1, 2].map((i) => words(disk.subarray(i * 512, i * 512 + 12)));
    expect(log).toEqual([
      [1, 7, 1],
      [2, 9, 1],
      [3, 7, 2],
    ]);
  });
});

describe("guests/stress.s", () => {
  it.each([
    [1, 20],
    [8, 10],
    [40, 5],
  ])("dirties %i pages per event for %i rounds", async (pages, rounds) => {
    const g = await createGuest({ asm: tune(stress, { PAGES: pages, ROUNDS: rounds }) });
    const s = await waitFor(g.id, (s) => s.state === "halted");
    expect(s.exitCode).toBe(0);
    expect(await consoleText(g.id)).toBe(".".repeat(rounds) + "\ndone\n");
    expect(s.counters.events).toBe(rounds + 1);
    // The last round's stores are visible in memory: region page k holds its round.
    const region = assemble(stress).symbols.region;
    const lastPage = (pages * rounds - 1) % 64;
    const bytes = new Uint8Array(await (await call("GET", `/api/guests/${g.id}/memory?addr=${region + lastPage * 4096}&len=8`)).arrayBuffer());
    expect(words(bytes)).toEqual([rounds - 1, lastPage]);
  });
});
