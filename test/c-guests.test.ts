/**
 * The C example guests (guests/c, built with guests/sdk by `npm run guests`;
 * the ELF files are committed, so no compiler is needed here): the counter
 * service answers as guests/counter.s does, exactly once per (client, seq)
 * and logged to disk; the key-value store keeps its data on the disk, so a
 * value set before the primary crashes is read back from the new primary.
 */
import { describe, expect, it } from "vitest";
import counterElf from "../guests/c/counter.elf";
import kvElf from "../guests/c/kv.elf";
import { encodeBase64 } from "../src/image/load.ts";
import { client, consoleText, createGuest, diskBytes, fault, outbound, sendPacket, waitFor } from "./helpers/api.ts";

const elf = (bytes: ArrayBuffer) => ({ elf: encodeBase64(new Uint8Array(bytes)) });
const HEARTBEAT = { heartbeat: { intervalMs: 20, timeoutMs: 300 } };
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function ask(id: string, request: Uint8Array, index: number): Promise<Uint8Array> {
  await sendPacket(id, request);
  let got: { index: number; data: Uint8Array }[] = [];
  for (let i = 0; i < 400 && got.length === 0; i++) {
    got = await outbound(id, index);
    if (got.length === 0) await new Promise((r) => setTimeout(r, 10));
  }
  expect(got.length, `no reply ${index}`).toBeGreaterThan(0);
  return got[0].data;
}

describe("C guests", () => {
  it("counter.c: counts each (client, seq) once, answers repeats alike, logs to disk", async () => {
    const g = await createGuest(elf(counterElf), { mode: "kemari" });
    await waitFor(g.id, (s) => s.state === "waiting");
    expect(await consoleText(g.id)).toBe("counter (C) ready\n");
    const req = (client: number, seq: number) => new Uint8Array(new Uint32Array([client, seq]).buffer);
    const replies = [];
    for (const [i, [c, s]] of [[1, 1], [1, 2], [1, 2], [2, 1]].entries()) replies.push([...new Uint32Array((await ask(g.id, req(c, s), i)).slice().buffer)]);
    expect(replies).toEqual([[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 1, 3]]);
    const log = new Uint32Array((await diskBytes(g.id, 1, 3)).slice().buffer);
    expect([log[0], log[1], log[2], log[128], log[256], log[257], log[258]]).toEqual([1, 1, 1, 2, 3, 2, 1]);
    await client.remove(g.id);
  });

  it("kv.c: SET, GET, DEL over packets; a value set before the primary crashes is read back after the takeover", async () => {
    const g = await createGuest(elf(kvElf), { mode: "kemari", ...HEARTBEAT });
    await waitFor(g.id, (s) => s.state === "waiting");
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(text(await ask(g.id, enc("SET colour blue"), 0))).toBe("OK");
    expect(text(await ask(g.id, enc("GET colour"), 1))).toBe("blue");
    expect(text(await ask(g.id, enc("GET size"), 2))).toBe("NOTFOUND");
    expect(text(await ask(g.id, enc("SET size a value with spaces"), 3))).toBe("OK");
    await fault(g.id, { target: "primary", kind: "crash" });
    await waitFor(g.id, (s) => s.generation === 1 && s.protection === "protected" && s.state === "waiting", 15_000);
    expect(text(await ask(g.id, enc("GET colour"), 4))).toBe("blue");
    expect(text(await ask(g.id, enc("GET size"), 5))).toBe("a value with spaces");
    expect(text(await ask(g.id, enc("DEL colour"), 6))).toBe("OK");
    expect(text(await ask(g.id, enc("GET colour"), 7))).toBe("NOTFOUND");
    expect(text(await ask(g.id, enc("FROB x"), 8))).toMatch(/^ERR commands/);
    await client.remove(g.id);
  });
});
