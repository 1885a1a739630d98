/**
 * Test helpers: the Worker's API in-process, the way a client would reach it
 * — through the typed client (src/client.ts) the CLI uses, its fetch routed to
 * the Worker; `call` stays for tests of the HTTP layer itself (statuses,
 * headers, problems).
 */
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import { KemariClient, type CreateGuestInput, type FaultInput, type Observed } from "../../src/client.ts";
import type { GuestStatus } from "../../src/host/status.ts";

export const TOKEN = "test-token";

/** The typed client, its requests handled by the Worker in this process. */
export const client = new KemariClient({ url: "http://localhost", token: TOKEN, fetch: (input, init) => exports.default.fetch(new Request(input, init)) });

export interface CallOptions {
  body?: unknown;
  raw?: BodyInit;
  token?: string | null;
  headers?: Record<string, string>;
}

export async function call(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? TOKEN}`;
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    headers["content-type"] ??= "application/json";
    body = JSON.stringify(opts.body);
  }
  return exports.default.fetch(new Request(`http://localhost${path}`, { method, headers, body }));
}

export async function json<T = Record<string, unknown>>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as T;
}

/** Create a guest from assembly (or another image) and return its status. */
export async function createGuest(image: object, extra: Record<string, unknown> = {}): Promise<GuestStatus> {
  return client.create({ image, ...extra } as CreateGuestInput);
}

export async function status(id: string): Promise<GuestStatus> {
  return client.status(id);
}

/** Poll the guest's status until `done` holds (the guest runs on its own alarm). */
export async function waitFor(id: string, done: (s: GuestStatus) => boolean, timeoutMs = 10_000): Promise<GuestStatus> {
  const deadline = Date.now() + timeoutMs;
  let s = await status(id);
  while (!done(s)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting; last status: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 5));
    s = await status(id);
  }
  return s;
}

export async function consoleText(id: string): Promise<string> {
  return (await client.console(id)).text;
}

export async function outbound(id: string, from = 0): Promise<{ index: number; data: Uint8Array }[]> {
  return (await client.outbound(id, from)).packets;
}

export async function sendPacket(id: string, data: Uint8Array): Promise<void> {
  await client.send(id, data);
}

export type FaultBody = FaultInput;

export async function fault(id: string, body: FaultBody): Promise<void> {
  await client.fault(id, body);
}

export async function diskBytes(id: string, sector: number, count: number): Promise<Uint8Array> {
  return client.disk(id, sector, count);
}

export async function resume(id: string): Promise<void> {
  await client.resume(id);
}

/** Everything the outside world can see of a finished guest, to compare runs. */
export type { Observed };

export async function observe(id: string, sectors = 64): Promise<Observed> {
  const s = await status(id);
  const disk = await diskBytes(id, 0, sectors);
  return {
    state: s.state,
    exitCode: s.exitCode,
    console: await consoleText(id),
    packets: (await outbound(id)).map((p) => `${p.index}:${[...p.data].join(",")}`),
    disk: await sha256(disk),
  };
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}
