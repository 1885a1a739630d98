/**
 * A typed client for the HTTP API: what the `kemari` CLI, the tests, the
 * bench and the soak use, and any program that drives guests. Its types are
 * the routes' own schemas — requests from src/api/schemas.ts, responses from
 * src/api/responses.ts, the ones the OpenAPI document is generated from and
 * real responses are tested against — so a change to a route shows up here
 * at compile time.
 * It runs wherever `fetch` does (Node ≥ 18, browsers, Workers); pass
 * `fetch` to route it elsewhere (a test's in-process Worker).
 *
 * A refused request throws `ApiError`, carrying the RFC 9457 problem the API
 * answered (its title, detail and, where one is at fault, the field).
 */
import type { z } from "zod";
import type * as R from "./api/responses.ts";
import type { CreateGuest, FaultRequest } from "./api/schemas.ts";

export type GuestStatus = z.infer<typeof R.GuestStatus>;
export type StepResult = z.infer<typeof R.StepResult>;
export type ListedGuest = z.infer<typeof R.ListedGuest>;
export type ConsolePage = z.infer<typeof R.ConsolePage>;
export type FaultAccepted = z.infer<typeof R.FaultAccepted>;
export type Examples = z.infer<typeof R.Examples>;

/** The body of POST /api/guests, as a caller writes it (defaults may be left out). */
export type CreateGuestInput = z.input<typeof CreateGuest>;
export type FaultInput = z.input<typeof FaultRequest>;

/** An RFC 9457 problem, as the API answers a refused request. */
export interface Problem {
  type?: string;
  title: string;
  status: number;
  detail?: string;
  field?: string;
  [extension: string]: unknown;
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title);
    this.name = "ApiError";
  }

  get status(): number {
    return this.problem.status;
  }
}

export interface ClientOptions {
  /** Where the API is (the Worker's origin): default http://127.0.0.1:8787. */
  url?: string;
  /** The API token (Authorization: Bearer …): default "dev", the local default. */
  token?: string;
  fetch?: typeof fetch;
}

export interface Packet {
  index: number;
  data: Uint8Array;
}

/** What the outside world can see of a guest, to compare runs (the tests' and `kemari check`'s transparency oracle). */
export interface Observed {
  state: string;
  exitCode: number | null;
  console: string;
  /** Each packet the guest sent, in net-tx order (as each comparer writes it). */
  packets: string[];
  /** A digest of the disk. */
  disk: string;
}

export const DEFAULT_URL = "http://127.0.0.1:8787";
export const DEFAULT_TOKEN = "dev";

export class KemariClient {
  readonly url: string;
  private readonly token: string;
  private readonly doFetch: typeof fetch;

  constructor(options: ClientOptions = {}) {
    this.url = (options.url ?? DEFAULT_URL).replace(/\/+$/, "");
    this.token = options.token ?? DEFAULT_TOKEN;
    this.doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** One request; a problem answer becomes an ApiError. */
  async request(method: string, path: string, body?: { json: unknown } | { bytes: Uint8Array }): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    let payload: BodyInit | undefined;
    if (body && "json" in body) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body.json);
    } else if (body) {
      headers["content-type"] = "application/octet-stream";
      payload = body.bytes.slice();
    }
    const res = await this.doFetch(`${this.url}${path}`, { method, headers, body: payload });
    if (res.ok) return res;
    const text = await res.text();
    let problem: Problem;
    try {
      problem = JSON.parse(text) as Problem;
      if (typeof problem.title !== "string") throw new Error("not a problem");
    } catch {
      problem = { title: res.statusText || "error", status: res.status, detail: text.slice(0, 500) || `${method} ${path} answered ${res.status}` };
    }
    problem.status ??= res.status;
    throw new ApiError(problem);
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body === undefined ? undefined : { json: body });
    return (await res.json()) as T;
  }

  examples(): Promise<Examples> {
    return this.json("GET", "/api/examples");
  }

  create(body: CreateGuestInput): Promise<GuestStatus> {
    return this.json("POST", "/api/guests", body);
  }

  /** A page of guests, newest first; `next` is the cursor of the following page (null at the end). */
  list(options: { limit?: number; cursor?: string } = {}): Promise<{ guests: ListedGuest[]; next: string | null }> {
    const q = new URLSearchParams();
    if (options.limit !== undefined) q.set("limit", String(options.limit));
    if (options.cursor) q.set("cursor", options.cursor);
    return this.json("GET", `/api/guests${q.size ? `?${q}` : ""}`);
  }

  status(id: string): Promise<GuestStatus> {
    return this.json("GET", `/api/guests/${encodeURIComponent(id)}`);
  }

  async remove(id: string): Promise<void> {
    await this.request("DELETE", `/api/guests/${encodeURIComponent(id)}`);
  }

  pause(id: string): Promise<GuestStatus> {
    return this.json("POST", `/api/guests/${encodeURIComponent(id)}/pause`);
  }

  resume(id: string): Promise<GuestStatus> {
    return this.json("POST", `/api/guests/${encodeURIComponent(id)}/resume`);
  }

  /** Run up to `instructions` of a paused guest (the API stops at a slice's worth: ask again for more). */
  step(id: string, instructions = 1): Promise<StepResult> {
    return this.json("POST", `/api/guests/${encodeURIComponent(id)}/step`, { instructions });
  }

  fault(id: string, fault: FaultInput): Promise<FaultAccepted> {
    return this.json("POST", `/api/guests/${encodeURIComponent(id)}/faults`, fault);
  }

  console(id: string, from = 0): Promise<ConsolePage> {
    return this.json("GET", `/api/guests/${encodeURIComponent(id)}/console?from=${from}`);
  }

  /** A packet for the guest's net-rx device. */
  async send(id: string, packet: Uint8Array): Promise<{ accepted: number }> {
    const res = await this.request("POST", `/api/guests/${encodeURIComponent(id)}/inbound`, { bytes: packet });
    return (await res.json()) as { accepted: number };
  }

  /** Packets the guest sent, from net-tx index `from`. */
  async outbound(id: string, from = 0): Promise<{ packets: Packet[]; next: number }> {
    const r = await this.json<{ packets: { index: number; data: string }[]; next: number }>("GET", `/api/guests/${encodeURIComponent(id)}/outbound?from=${from}`);
    return { packets: r.packets.map((p) => ({ index: p.index, data: fromBase64(p.data) })), next: r.next };
  }

  async memory(id: string, addr: number, len: number): Promise<Uint8Array> {
    const res = await this.request("GET", `/api/guests/${encodeURIComponent(id)}/memory?addr=${addr}&len=${len}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  async disk(id: string, sector: number, count: number, view: "acked" | "live" = "acked"): Promise<Uint8Array> {
    const res = await this.request("GET", `/api/guests/${encodeURIComponent(id)}/disk?sector=${sector}&count=${count}&view=${view}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** The live event stream's URL (ws: or wss:); the token goes as the socket's first message: `{"auth": token}`. */
  eventsUrl(id: string): string {
    return `${this.url.replace(/^http/, "ws")}/api/guests/${encodeURIComponent(id)}/events`;
  }

  get authMessage(): string {
    return JSON.stringify({ type: "auth", token: this.token });
  }
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
