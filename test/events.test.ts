/** The live event stream: message encoding, the late joiner's snapshot, and the WebSocket itself. */
import { exports } from "cloudflare:workers";
import { env as testEnv, listDurableObjectIds } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import counter from "../guests/counter.s?raw";
import { Timeline, decodeMessage, encodeMessage, event, type StreamMessage, type SyncEvent } from "../src/events/messages.ts";
import type { GuestStatus } from "../src/host/status.ts";
import { TOKEN, createGuest, fault, sendPacket, waitFor } from "./helpers/api.ts";
import { CONSOLE_START } from "./helpers/guests.ts";

const STATUS = { id: "g-000000000001", memoryPages: 256, generation: 0 } as unknown as GuestStatus;

function sync(seq: number, sent: number[]): SyncEvent {
  return event<SyncEvent>({ type: "sync", generation: 0, seq, full: false, pages: sent.length, sent, bytes: 100, dirtyBytes: 4096 * sent.length, deltaSaved: 0, pauseMs: 1, flightMs: 1 }, 1000 + seq);
}

describe("stream messages", () => {
  it("round-trip through their JSON encoding, with version and time", () => {
    const m = sync(3, [1, 2]);
    expect(m).toMatchObject({ v: 1, t: 1003, type: "sync", seq: 3 });
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it.each(["{}", "[]", "null", '{"v":2,"type":"sync","t":1}', '{"v":1,"t":1}', '{"v":1,"type":"sync"}'])("refuses %s", (text) => {
    expect(() => decodeMessage(text)).toThrow(TypeError);
  });

  it("gives a late joiner the recent timeline and the memory picture it implies", () => {
    const tl = new Timeline(3);
    tl.push(sync(1, [1]));
    tl.push(event({ type: "guest", generation: 0, state: "running", pc: 0, instructions: 5, devices: [], dirty: [7, 8] }));
    tl.push(sync(2, [4, 5]));
    tl.push(event({ type: "guest", generation: 0, state: "running", pc: 0, instructions: 9, devices: [], dirty: [9] }));
    const snap = tl.snapshot(STATUS, 5000);
    expect(snap).toMatchObject({ v: 1, type: "snapshot", t: 5000, status: STATUS, memory: { pages: 256, dirty: [9], sent: [4, 5] } });
    // Bounded: only the last three events, oldest first.
    expect(snap.timeline.map((e) => e.type)).toEqual(["guest", "sync", "guest"]);
    expect((snap.timeline[1] as SyncEvent).seq).toBe(2);
    // A takeover starts a fresh memory picture.
    tl.push(event({ type: "takeover", generation: 1, from: { name: "a", region: "weur" }, to: { name: "b", region: "enam" }, takeoverMs: 2 }));
    expect(tl.snapshot(STATUS).memory).toEqual({ pages: 256, dirty: [], sent: [] });
  });
});

/** Open the stream of a guest the way a browser does, through the Worker. */
async function connect(id: string, token: string): Promise<{ ws: WebSocket; messages: StreamMessage[]; closed: Promise<number> }> {
  const res = await exports.default.fetch(new Request(`http://localhost/api/guests/${id}/events`, { headers: { upgrade: "websocket" } }));
  expect(res.status).toBe(101);
  const ws = res.webSocket!;
  ws.accept();
  const messages: StreamMessage[] = [];
  const closed = new Promise<number>((resolve) => ws.addEventListener("close", (e) => resolve(e.code)));
  ws.addEventListener("message", (e) => messages.push(decodeMessage(e.data as string)));
  ws.send(JSON.stringify({ type: "auth", token }));
  return { ws, messages, closed };
}

async function until(messages: StreamMessage[], pred: (m: StreamMessage) => boolean, what: string): Promise<StreamMessage> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = messages.find(pred);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no ${what} in ${JSON.stringify(messages.map((x) => x.type))}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("the WebSocket stream", () => {
  it("sends a snapshot first, then syncs, outputs, the fault, the failure, the takeover and re-protection", async () => {
    const g = await createGuest({ asm: counter }, { heartbeat: { intervalMs: 20, timeoutMs: 300 } });
    await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 4);
    const { ws, messages } = await connect(g.id, TOKEN);
    const first = await until(messages, () => true, "message");
    expect(first.type).toBe("snapshot");
    if (first.type !== "snapshot") throw new Error("unreachable");
    expect(first.status.id).toBe(g.id);
    // The switch saw the banner before we joined: the late joiner's timeline has it.
    expect(first.timeline.some((e) => e.type === "output" && e.text === "counter service ready\n")).toBe(true);

    await sendPacket(g.id, new Uint8Array(new Uint32Array([3, 1]).buffer));
    const s = (await until(messages, (m) => m.type === "sync", "sync")) as SyncEvent;
    expect(s.pages).toBeGreaterThan(0);
    expect(s.bytes).toBeGreaterThan(0);
    await until(messages, (m) => m.type === "output" && m.device === "net" && m.index === 0, "reply packet");
    await until(messages, (m) => m.type === "guest" && m.devices.length === 4, "guest state");

    await fault(g.id, { target: "primary", kind: "crash" });
    await until(messages, (m) => m.type === "fault" && m.target === "primary", "fault");
    await until(messages, (m) => m.type === "failure", "failure");
    const t = await until(messages, (m) => m.type === "takeover", "takeover");
    expect(t).toMatchObject({ generation: 1 });
    await until(messages, (m) => m.type === "protected" && m.generation === 1, "re-protection");
    ws.close();
  });

  it("closes with 4401 on a wrong token, and sends nothing", async () => {
    const g = await createGuest({ asm: counter });
    const { messages, closed } = await connect(g.id, "not-the-token");
    expect(await closed).toBe(4401);
    expect(messages).toEqual([]);
  });

  it("refuses a request that is not an upgrade", async () => {
    const g = await createGuest({ asm: counter });
    const res = await exports.default.fetch(new Request(`http://localhost/api/guests/${g.id}/events`));
    expect(res.status).toBe(426);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });
});

describe("the event stream costs nothing to strangers (#11)", () => {
  it("answers 404 for an id that is not a guest, before any token, creating no switch", async () => {
    const before = (await listDurableObjectIds(testEnv.SWITCH)).length;
    for (let i = 0; i < 5; i++) {
      const id = `g-${String(i).padStart(12, "0")}`;
      const res = await exports.default.fetch(new Request(`http://localhost/api/guests/${id}/events`, { headers: { upgrade: "websocket" } }));
      expect(res.status).toBe(404);
      expect(((await res.json()) as { field?: string }).field).toBe("id");
    }
    expect((await listDurableObjectIds(testEnv.SWITCH)).length).toBe(before);
  });

  it("closes a socket that sends no token within 5 s (4408), and sends it nothing", async () => {
    const g = await createGuest({ asm: counter });
    const res = await exports.default.fetch(new Request(`http://localhost/api/guests/${g.id}/events`, { headers: { upgrade: "websocket" } }));
    const ws = res.webSocket!;
    ws.accept();
    const messages: unknown[] = [];
    ws.addEventListener("message", (e) => messages.push(e.data));
    const t0 = Date.now();
    const code = await new Promise<number>((resolve) => ws.addEventListener("close", (e) => resolve(e.code)));
    expect(code).toBe(4408);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4500);
    expect(messages).toEqual([]);
  }, 15_000);

  it("decides auth on the first message alone: a message right after a good token is ignored, not judged", async () => {
    const g = await createGuest({ asm: counter });
    await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 4);
    const { ws, messages } = await connect(g.id, TOKEN);
    ws.send(JSON.stringify({ type: "hello" }));
    ws.send("not even JSON");
    const first = await until(messages, () => true, "message");
    expect(first.type).toBe("snapshot");
    await sendPacket(g.id, new Uint8Array(new Uint32Array([9, 1]).buffer));
    await until(messages, (m) => m.type === "output" && m.device === "net", "the reply, after the stray messages");
    ws.close();
  });

  it("cuts what an output event says to 256 bytes, so a late joiner's snapshot stays small", async () => {
    // Prints a 4 KiB line (of NULs: what matters is its length) 300 times, then halts.
    const LOUD = `
${CONSOLE_START}    li   s0, 300
1:  la   t3, ring
    lw   t0, 0(t3)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, t3
    sw   t0, 0x40(t1)
    sw   zero, 0x44(t1)
    la   t2, line
    sw   t2, 0x48(t1)
    li   t2, 4096
    sw   t2, 0x4c(t1)
    addi t0, t0, 1
    sw   t0, 0(t3)
    li   a0, CONSOLE_PORT
    li   a7, 1
    ecall
2:  lw   t0, 0(t3)
    lw   t1, 8(t3)
    beq  t0, t1, 3f
    li   a7, 2
    ecall
    j    2b
3:  addi s0, s0, -1
    bnez s0, 1b
    li   a0, 0
    li   a7, 0
    ecall
.data
.align 12
ring: .space 4096
line: .space 4096
`;
    const g = await createGuest({ asm: LOUD }, { mode: "none" });
    await waitFor(g.id, (s) => s.state === "halted", 30_000);
    const { ws, messages } = await connect(g.id, TOKEN);
    const snap = await until(messages, (m) => m.type === "snapshot", "snapshot");
    const size = encodeMessage(snap).length;
    expect(size).toBeLessThanOrEqual(1 << 20);
    const outputs = snap.type === "snapshot" ? snap.timeline.filter((e) => e.type === "output") : [];
    expect(outputs.length).toBeGreaterThan(100);
    for (const o of outputs) if (o.type === "output") {
      expect(o.bytes).toBe(4096);
      expect(o.text?.length).toBe(256);
    }
    ws.close();
  }, 40_000);
});
