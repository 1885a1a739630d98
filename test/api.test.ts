/** Every API route, with good and bad input. */
import { describe, expect, it } from "vitest";
import hello from "../guests/hello.s?raw";
import NOTIFY_LOOP from "./helpers/notify-loop.s?raw";
import { call, consoleText, createGuest, json, status, waitFor } from "./helpers/api.ts";
import { encodeBase64 } from "../src/image/load.ts";
import { PROBLEM_STATUSES, problem, type Problem } from "../src/api/problem.ts";
import { createApp } from "../src/api/app.ts";
import { tokensEqual } from "../src/api/auth.ts";
import { env } from "cloudflare:workers";

const SPIN = "_start:\n  j _start\n";
const BREAK = "_start:\n  li a0, 7\n  ebreak\n  li a0, 0\n  li a7, 0\n  ecall\n";

async function problemOf(res: Response, status: number): Promise<Problem> {
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  const p = await json<Problem>(res, status);
  expect(p.status).toBe(status);
  expect(typeof p.detail).toBe("string");
  return p;
}

describe("authentication", () => {
  it("refuses a request without a token", async () => {
    const p = await problemOf(await call("GET", "/api/guests", { token: null }), 401);
    expect(p.detail).toMatch(/Authorization/);
  });

  it("refuses a wrong token", async () => {
    await problemOf(await call("GET", "/api/guests", { token: "nope" }), 401);
  });

  it("fails closed when no token is configured", async () => {
    const app = createApp();
    const res = await app.fetch(new Request("http://localhost/api/guests", { headers: { authorization: "Bearer " } }), { ...env, API_TOKEN: undefined });
    const p = await problemOf(res, 401);
    expect(p.detail).toMatch(/no token configured/);
    const res2 = await app.fetch(new Request("http://localhost/api/guests", { headers: { authorization: "Bearer undefined" } }), { ...env, API_TOKEN: "" });
    await problemOf(res2, 401);
  });

  it("compares tokens exactly", async () => {
    expect(await tokensEqual("dev", "dev")).toBe(true);
    expect(await tokensEqual("dev", "dev ")).toBe(false);
    expect(await tokensEqual("", "dev")).toBe(false);
  });

  it("serves the OpenAPI document without a token", async () => {
    const doc = await json<{ openapi: string; paths: Record<string, unknown> }>(await call("GET", "/api/openapi.json", { token: null }), 200);
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toContain("/api/guests/{id}/console");
  });
});

describe("creating guests", () => {
  it("runs hello to completion and shows its console", async () => {
    const created = await createGuest({ asm: hello }, { name: "hello" });
    expect(created).toMatchObject({
      name: "hello",
      mode: "kemari",
      generation: 0,
      protection: "protected",
      memoryPages: 256,
      diskSectors: 2048,
      hosts: { primary: { region: "weur" }, secondary: { region: "enam" } },
      heartbeat: { intervalMs: 200, timeoutMs: 2000 },
    });
    expect(created.id).toMatch(/^g-[0-9a-f]{12}$/);
    const s = await waitFor(created.id, (s) => s.state === "halted");
    expect(s.exitCode).toBe(0);
    expect(s.crash).toBeNull();
    expect(s.instructions).toBeGreaterThan(10);
    expect(await consoleText(created.id)).toBe("Hello from a Kemari guest!\n");
  });

  it("runs a guest unprotected in mode none", async () => {
    const created = await createGuest({ asm: hello }, { mode: "none" });
    expect(created).toMatchObject({ mode: "none", protection: "unprotected", hosts: { secondary: null }, heartbeat: null, sync: null });
    await waitFor(created.id, (s) => s.state === "halted");
    expect(await consoleText(created.id)).toBe("Hello from a Kemari guest!\n");
  });

  it("accepts flat binaries", async () => {
    // li a0, 42 ; li a7, 0 ; ecall
    const words = [0x02a00513, 0x00000893, 0x00000073];
    const bytes = new Uint8Array(new Uint32Array(words).buffer);
    const g = await createGuest({ flat: encodeBase64(bytes) }, { memoryPages: 16 });
    const s = await waitFor(g.id, (s) => s.state === "halted");
    expect(s.exitCode).toBe(42);
  });

  it("names the source line of an assembly error", async () => {
    const res = await call("POST", "/api/guests", { body: { image: { asm: "_start:\n  addi a0, a0, 1\n  frobnicate a0\n" } } });
    const p = await problemOf(res, 400);
    expect(p.field).toBe("image.asm");
    expect(p.line).toBe(3);
    expect(p.column).toBeGreaterThan(0);
  });

  it("names the offset of an ELF error", async () => {
    const res = await call("POST", "/api/guests", { body: { image: { elf: encodeBase64(new Uint8Array(64)) } } });
    const p = await problemOf(res, 400);
    expect(p.field).toBe("image.elf");
    expect(p.offset).toBe(0);
  });

  it.each([
    [{ image: { asm: SPIN }, memoryPages: 8 }, "memoryPages"],
    [{ image: { asm: SPIN }, memoryPages: 16385 }, "memoryPages"],
    [{ image: { asm: SPIN }, memoryPages: 1.5 }, "memoryPages"],
    [{ image: { asm: SPIN }, diskSectors: 0 }, "diskSectors"],
    [{ image: { asm: SPIN }, mode: "paxos" }, "mode"],
    [{ image: { asm: SPIN }, regions: { primary: "weur", secondary: "weur" } }, "regions.secondary"],
    [{ image: { asm: SPIN }, regions: { primary: "mars" } }, "regions.primary"],
    [{ image: { asm: SPIN }, regions: { primary: "wnam", tertiary: "oc" } }, "regions"],
    [{ image: { asm: SPIN }, heartbeat: { intervalMs: 500, timeoutMs: 100 } }, "heartbeat.timeoutMs"],
    [{ image: { asm: SPIN }, heartbeat: { intervalMs: 1 } }, "heartbeat.intervalMs"],
    [{ image: { asm: SPIN }, surprise: 1 }, "body"],
    [{ image: { asm: SPIN }, name: "" }, "name"],
    [{ image: {} }, "image"],
    [{ image: { elf: "not base64!" } }, "image.elf"],
    [{}, "image"],
  ])("refuses %j, naming %s", async (body, field) => {
    const p = await problemOf(await call("POST", "/api/guests", { body }), 400);
    expect(p.field).toBe(field);
  });

  it("refuses an image larger than memory", async () => {
    const p = await problemOf(await call("POST", "/api/guests", { body: { image: { asm: `${SPIN}.data\n.space 70000\n` }, memoryPages: 16 } }), 400);
    expect(p.detail).toMatch(/memoryPages/);
  });

  it("refuses a body that is not JSON", async () => {
    await problemOf(await call("POST", "/api/guests", { raw: "{nope", headers: { "content-type": "application/json" } }), 400);
    await problemOf(await call("POST", "/api/guests", { raw: "hi", headers: { "content-type": "text/plain" } }), 415);
  });

  it("refuses a body over the limit", async () => {
    const big = "#".repeat(3 << 20);
    await problemOf(await call("POST", "/api/guests", { raw: JSON.stringify({ image: { asm: big } }), headers: { "content-type": "application/json" } }), 413);
  });

  it("lists guests", async () => {
    const g = await createGuest({ asm: SPIN }, { name: "listed" });
    const list = await json<{ guests: { id: string; name: string; state: string }[] }>(await call("GET", "/api/guests"), 200);
    expect(list.guests.find((x) => x.id === g.id)).toMatchObject({ name: "listed", state: "running" });
  });
});

describe("controlling a guest", () => {
  it("pauses, steps exactly, resumes", async () => {
    const g = await createGuest({ asm: SPIN });
    const paused = await json<{ state: string; instructions: number; pc: number }>(await call("POST", `/api/guests/${g.id}/pause`), 200);
    expect(paused.state).toBe("paused");
    const stepped = await json<{ state: string; instructions: number }>(await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 5 } }), 200);
    expect(stepped).toMatchObject({ state: "paused", instructions: paused.instructions + 5 });
    const again = await json<{ instructions: number }>(await call("POST", `/api/guests/${g.id}/step`), 200);
    expect(again.instructions).toBe(stepped.instructions + 1);
    const resumed = await json<{ state: string }>(await call("POST", `/api/guests/${g.id}/resume`), 200);
    expect(resumed.state).toBe("running");
    const later = await waitFor(g.id, (s) => s.instructions > stepped.instructions + 1000);
    expect(later.state).toBe("running");
  });

  it("refuses a step of a running guest, and a bad step count", async () => {
    const g = await createGuest({ asm: SPIN });
    await problemOf(await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 1 } }), 409);
    await call("POST", `/api/guests/${g.id}/pause`);
    const p = await problemOf(await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 0 } }), 400);
    expect(p.field).toBe("instructions");
  });

  it("stops at a breakpoint and resumes after it", async () => {
    const g = await createGuest({ asm: BREAK });
    const s = await waitFor(g.id, (s) => s.state === "breakpoint");
    expect(s.pc).toBe(8);
    await call("POST", `/api/guests/${g.id}/resume`);
    expect((await waitFor(g.id, (s) => s.state === "halted")).exitCode).toBe(0);
  });

  it("reports a crash with its reason and pc", async () => {
    const g = await createGuest({ asm: "_start:\n  nop\n  .word 0xffffffff\n" });
    const s = await waitFor(g.id, (s) => s.state === "crashed");
    expect(s.crash).toEqual({ reason: "illegal instruction 0xffffffff", pc: 4 });
    await problemOf(await call("POST", `/api/guests/${g.id}/resume`), 409);
  });

  it("costs no CPU while waiting", async () => {
    const g = await createGuest({ asm: "_start:\n  li a7, 2\n  ecall\n  j _start\n" });
    const a = await waitFor(g.id, (s) => s.state === "waiting");
    await new Promise((r) => setTimeout(r, 50));
    const b = await status(g.id);
    expect(b).toMatchObject({ state: "waiting", instructions: a.instructions, pc: 4 });
  });

  it("serves requests while a guest spins", async () => {
    const g = await createGuest({ asm: SPIN });
    const a = (await status(g.id)).instructions;
    for (let i = 0; i < 5; i++) await status(g.id);
    const b = await waitFor(g.id, (s) => s.instructions > a);
    expect(b.state).toBe("running");
  });

  it("reads memory and disk as raw bytes, within bounds", async () => {
    const g = await createGuest({ asm: "_start:\n  j _start\n.data\nmsg: .ascii \"KEMARI\"\n" }, { memoryPages: 16 });
    const res = await call("GET", `/api/guests/${g.id}/memory?addr=4&len=6`);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(new TextDecoder().decode(await res.arrayBuffer())).toBe("KEMARI");
    const disk = await call("GET", `/api/guests/${g.id}/disk?sector=0&count=2`);
    expect((await disk.arrayBuffer()).byteLength).toBe(1024);
    expect((await problemOf(await call("GET", `/api/guests/${g.id}/memory?addr=65530&len=16`), 400)).field).toBe("addr");
    expect((await problemOf(await call("GET", `/api/guests/${g.id}/memory?addr=0`), 400)).field).toBe("len");
    expect((await problemOf(await call("GET", `/api/guests/${g.id}/disk?sector=2047&count=2`), 400)).field).toBe("sector");
    expect((await problemOf(await call("GET", `/api/guests/${g.id}/console?from=-1`), 400)).field).toBe("from");
  });

  it("deletes a guest", async () => {
    const g = await createGuest({ asm: SPIN });
    expect((await call("DELETE", `/api/guests/${g.id}`)).status).toBe(204);
    await problemOf(await call("GET", `/api/guests/${g.id}`), 404);
    await problemOf(await call("DELETE", `/api/guests/${g.id}`), 404);
    const list = await json<{ guests: { id: string }[] }>(await call("GET", "/api/guests"), 200);
    expect(list.guests.some((x) => x.id === g.id)).toBe(false);
  });

  it("answers 404 for unknown guests and routes", async () => {
    await problemOf(await call("GET", "/api/guests/g-000000000000"), 404);
    await problemOf(await call("GET", "/api/guests/nonsense"), 404);
    await problemOf(await call("GET", "/api/nothing-here"), 404);
  });

  it("refuses an empty or oversized inbound packet", async () => {
    const g = await createGuest({ asm: SPIN });
    await problemOf(await call("POST", `/api/guests/${g.id}/inbound`, { raw: new Uint8Array(0) }), 400);
    await problemOf(await call("POST", `/api/guests/${g.id}/inbound`, { raw: new Uint8Array(4097) }), 413);
  });
});

describe("faults", () => {
  it("accepts a fault and says which host it hit", async () => {
    const g = await createGuest({ asm: SPIN }, { paused: true });
    const res = await call("POST", `/api/guests/${g.id}/faults`, { body: { target: "secondary", kind: "crash", at: "after-ack" } });
    const body = await json<{ target: string; kind: string; at: string; hosts: { name: string }[] }>(res, 202);
    expect(body).toMatchObject({ target: "secondary", kind: "crash", at: "after-ack" });
    expect(body.hosts.map((h) => h.name)).toEqual([g.hosts.secondary!.name]);
    const now = await json<{ at: string }>(await call("POST", `/api/guests/${g.id}/faults`, { body: { target: "primary", kind: "partition" } }), 202);
    expect(now.at).toBe("now");
    const healed = await json<{ hosts: { name: string }[] }>(await call("POST", `/api/guests/${g.id}/faults`, { body: { target: "primary", kind: "heal" } }), 202);
    expect(healed.hosts.map((h) => h.name)).toEqual([g.hosts.primary.name]);
  });

  it.each([
    [{ target: "tertiary", kind: "crash" }, "target"],
    [{ target: "primary", kind: "explode" }, "kind"],
    [{ target: "primary", kind: "crash", at: "sometime" }, "at"],
    [{ target: "primary", kind: "partition", at: "mid-transfer" }, "at"],
    [{ target: "primary", kind: "partition", at: { instruction: 5 } }, "at"],
    [{ target: "primary", kind: "crash", at: { instruction: -1 } }, "at.instruction"],
    [{ target: "primary", kind: "crash", at: { instruction: 5, step: "now" } }, "at"],
    [{ kind: "crash" }, "target"],
    [{ target: "primary", kind: "crash", extra: 1 }, "body"],
  ])("refuses %j, naming %s", async (body, field) => {
    const g = await createGuest({ asm: SPIN }, { paused: true });
    const p = await problemOf(await call("POST", `/api/guests/${g.id}/faults`, { body }), 400);
    expect(p.field).toBe(field);
    expect((await status(g.id)).generation).toBe(0);
  });

  it("refuses a secondary fault on an unprotected guest", async () => {
    const g = await createGuest({ asm: SPIN }, { mode: "none" });
    const p = await problemOf(await call("POST", `/api/guests/${g.id}/faults`, { body: { target: "secondary", kind: "crash" } }), 409);
    expect(p.field).toBe("target");
    await problemOf(await call("POST", "/api/guests/g-000000000000/faults", { body: { target: "primary", kind: "crash" } }), 404);
  });

  it("reports a guest in mode none as lost when its host crashes", async () => {
    const g = await createGuest({ asm: SPIN }, { mode: "none" });
    await json(await call("POST", `/api/guests/${g.id}/faults`, { body: { target: "primary", kind: "crash" } }), 202);
    const s = await waitFor(g.id, (x) => x.state === "crashed");
    expect(s.crash!.reason).toMatch(/lost/);
  });
});

describe("examples", () => {
  it("serves the example guests' sources, each of which assembles and runs", async () => {
    const { examples } = await json<{ examples: { name: string; title: string; source: string }[] }>(await call("GET", "/api/examples"), 200);
    expect(examples.map((e) => e.name)).toEqual(["hello", "counter", "echo", "journal", "stress", "streamer", "workload"]);
    expect(examples[0].source).toBe(hello);
    for (const e of examples) expect(e.title.length).toBeGreaterThan(10);
    await problemOf(await call("GET", "/api/examples", { token: null }), 401);
  });
});

describe("headers, methods and problem titles (#11)", () => {
  it("sends the security headers on every API response, answers and problems alike", async () => {
    for (const res of [
      await call("GET", "/api/examples"),
      await call("GET", "/api/guests/g-000000000000"),
      await call("GET", "/api/examples", { token: null }),
      await call("GET", "/api/openapi.json"),
      // Paths next to the API reference's own (which carry their own policy), and a refused WebSocket upgrade.
      await call("GET", "/api/docsx", { token: null }),
      await call("POST", "/api/docs", { token: null }),
      await call("GET", "/api/docs/nothing", { token: null }),
      await call("GET", "/api/guests/g-000000000000/events", { headers: { upgrade: "websocket" } }),
    ]) {
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    }
  });

  it("answers a method a path does not take with 405 and the methods it does", async () => {
    const cases: [string, string, string][] = [
      ["PUT", "/api/guests", "GET, POST"],
      ["DELETE", "/api/examples", "GET"],
      ["GET", "/api/guests/g-000000000000/pause", "POST"],
      ["PATCH", "/api/guests/g-000000000000", "DELETE, GET"],
    ];
    for (const [method, path, allow] of cases) {
      const res = await call(method, path);
      const p = await problemOf(res, 405);
      expect(p.title).toBe("Method Not Allowed");
      expect(res.headers.get("allow")).toBe(allow);
      expect(p.detail).toContain(allow);
    }
    // A path the API does not have at all stays a 404.
    expect((await problemOf(await call("GET", "/api/nothing-here"), 404)).title).toBe("Not Found");
  });

  it("gives every status it answers with a proper title", async () => {
    for (const status of PROBLEM_STATUSES) {
      const p = (await problem(status, "x").json()) as Problem;
      expect(p.title).not.toMatch(/^(Error|HTTP \d+)$/);
    }
    // The event stream without an upgrade: 426, titled.
    const res = await call("GET", "/api/guests/g-000000000000/events");
    expect((await problemOf(res, 426)).title).toBe("Upgrade Required");
  });
});

describe("bounded work per call (#11, item 2)", () => {

  it("a step of 10 M instructions stops at a slice's event budget and says what it executed; the guest answers meanwhile", async () => {
    const g = await createGuest({ asm: NOTIFY_LOOP }, { mode: "kemari", paused: true });
    const before = await status(g.id);
    const t0 = Date.now();
    const stepping = call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 10_000_000 } });
    // While it steps, the guest's status answers promptly.
    const s0 = Date.now();
    await status(g.id);
    const statusMs = Date.now() - s0;
    const stepped = await json<{ state: string; instructions: number; executed: number; sync: { syncs: number } }>(await stepping, 200);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(statusMs).toBeLessThan(2000);
    expect(stepped.state).toBe("paused");
    expect(stepped.executed).toBeGreaterThan(0);
    expect(stepped.executed).toBeLessThan(10_000_000);
    expect(stepped.instructions).toBe(before.instructions + stepped.executed);
    // At most 16 events, so at most 16 checkpoints (plus the first, full one).
    expect(stepped.sync.syncs - (before.sync?.syncs ?? 0)).toBeLessThanOrEqual(17);
    // Asking again goes on from there.
    const again = await json<{ instructions: number; executed: number }>(await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 10_000_000 } }), 200);
    expect(again.instructions).toBe(stepped.instructions + again.executed);
  });

  it("a step of a compute-bound guest stops after a slice's worth of instructions", async () => {
    const g = await createGuest({ asm: SPIN }, { mode: "none", paused: true });
    const stepped = await json<{ executed: number; state: string }>(await call("POST", `/api/guests/${g.id}/step`, { body: { instructions: 10_000_000 } }), 200);
    expect(stepped).toMatchObject({ executed: 1_000_000, state: "paused" });
  });
});

describe("images past the RPC limit (#11, item 3, in part)", () => {
  it("carries a large trailing .space as its size, not its zeros, and the guest runs", async () => {
    // 40 MiB of zeros after the code: they cost nothing to build or send.
    const g = await createGuest({ asm: `${BREAK}.data\n.byte 1\n.space 41943040\n` }, { memoryPages: 16384, mode: "none" });
    const s = await waitFor(g.id, (x) => x.state === "breakpoint");
    expect(s.state).toBe("breakpoint");
  });

  it("carries 40 MiB of zeros between data as a gap: only the bytes around it travel, and they land where they belong", async () => {
    const g = await createGuest({ asm: `${SPIN}.data\n.ascii "KE"\n.space 41943040\n.ascii "MARI"\n` }, { memoryPages: 16384, mode: "none" });
    const end = 8 + 41943040;
    const bytes = async (addr: number, len: number) => new TextDecoder().decode(await (await call("GET", `/api/guests/${g.id}/memory?addr=${addr}&len=${len}`)).arrayBuffer());
    expect(await bytes(4, 2)).toBe("KE");
    expect(await bytes(end - 2, 4)).toBe("MARI");
    expect(await bytes(1 << 20, 4)).toBe("\0\0\0\0");
  });

  it("refuses, naming the limit, an image whose decoded data would not fit an RPC (not a bare 500)", async () => {
    // 40 MiB of ones: data, not zeros.
    const p = await problemOf(await call("POST", "/api/guests", { body: { image: { asm: `${SPIN}.data\n.space 41943040, 1\n` }, memoryPages: 16384 } }), 400);
    expect(p.field).toBe("image.asm");
    expect(p.detail).toMatch(/at most 16777216 \(16 MiB\)/);
  });
});
