/**
 * The HTTP API (Hono). Every guest is reached through its switch Durable
 * Object; input is validated here, in the Worker, before any object is
 * touched, so bad input never reaches an existing guest.
 */
import { OpenAPIHono, type Hook, type z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import type { Env } from "../env.ts";
import { ERROR_STATUS, GuestError, unwrap } from "../host/errors.ts";
import { DEFAULT_KEMARI, type GuestConfig } from "../host/guest-config.ts";
import { DEFAULT_PRIMARY_REGION, DEFAULT_SECONDARY_REGION } from "../kemari/placement.ts";
import { ImageError } from "../image/image.ts";
import { buildImage, encodeBase64 } from "../image/load.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import { tokensEqual } from "./auth.ts";
import { DOC_PATHS, mountDocs } from "./docs.ts";
import { EXAMPLES } from "./examples.ts";
import { problem } from "./problem.ts";
import type { GuestList } from "./responses.ts";
import { routes } from "./routes.ts";
import { decodeCursor } from "./cursor.ts";
import { addGuest, hasGuest, listGuests, removeGuest } from "./directory.ts";
import { summaryOf } from "./summary.ts";
import { checkCreate, heartbeatFor, LIMITS } from "./schemas.ts";

type App = { Bindings: Env };
type C = Context<App>;

function fieldOf(path: PropertyKey[]): string {
  return path.map(String).join(".");
}

/**
 * A request that fails its route's schema: an RFC 9457 problem naming the
 * field at fault (every issue in `errors`). A malformed guest id is a guest
 * that does not exist: 404, as before any object is touched.
 */
const invalid: Hook<unknown, App, string, Response | undefined> = (result, c) => {
  if (result.success) return undefined;
  if (result.target === "param") return problem(404, `no guest '${c.req.param("id") ?? ""}'`, { field: "id" });
  const where = result.target === "json" ? "body" : "query";
  const errors = result.error.issues.map((i) => ({ field: fieldOf(i.path) || where, message: i.message }));
  const first = errors[0];
  return problem(400, `${first.field}: ${first.message}`, { field: first.field, errors });
};

function switchOf(c: C, id: string) {
  return c.env.SWITCH.get(c.env.SWITCH.idFromName(id));
}


function newGuestId(): string {
  return `g-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

const tooLarge = (limit: number) => () => problem(413, `the body is larger than ${limit} bytes`);

/** The headers secureHeaders gives an API answer, for one built where the middleware cannot run (a refused WebSocket upgrade). */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
};

function secured(res: Response): Response {
  const out = new Response(res.body, res);
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) out.headers.set(k, v);
  return out;
}

/** Refuse the request with a problem (thrown, so a handler's return type stays the route's documented one). */
function fail(status: 400 | 404 | 409, detail: string, extra: Parameters<typeof problem>[2] = {}): never {
  throw new HTTPException(status, { res: problem(status, detail, extra) });
}

export function createApp(): OpenAPIHono<App> {
  const app = new OpenAPIHono<App>({ defaultHook: invalid });

  // Every API response: JSON and problems only, so a CSP that allows nothing; never framed;
  // no sniffing; no referrer. (The dashboard's assets get theirs from public/_headers.)
  // (Not on a WebSocket's 101: its headers cannot be changed, and it carries no document.)
  const headers = secureHeaders({
    contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
    xFrameOptions: "DENY",
    xContentTypeOptions: true,
    referrerPolicy: "no-referrer",
    crossOriginResourcePolicy: "same-origin",
    strictTransportSecurity: false,
  });
  // (Nor on the API reference's page and assets, which carry their own, allowing this origin's scripts and styles.)
  app.use("*", async (c, next) => {
    if (c.req.method === "GET" && DOC_PATHS.has(c.req.path)) return next();
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return headers(c, next);
    await next();
    if (c.res.status !== 101) c.res = secured(c.res); // a refused upgrade is an ordinary answer
  });
  mountDocs(app);

  // The document, generated from the routes below; it needs no token.
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  app.doc31("/api/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Kemari on Durable Objects",
      version: "0.1.0",
      description: "Run RV32IM guests on Durable Objects, protected by Kemari or Remus. Every route except this document, /api/docs and GET / needs `Authorization: Bearer <API_TOKEN>`.",
    },
  });

  // The live event stream: a browser cannot set an Authorization header on a
  // WebSocket, so the token comes as the socket's first message (see src/events/messages.ts).
  app.openapi(routes.events, async (c) => {
    const { id } = c.req.valid("param");
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return problem(426, "this is a WebSocket endpoint (Upgrade: websocket)");
    // Before any token (it comes as the socket's first message): a stranger's request for an id
    // that is not a guest must not create its switch, and with it a database.
    if (!(await hasGuest(c.env, id))) return problem(404, `no guest '${id}'`, { field: "id" });
    return switchOf(c, id).fetch(c.req.raw);
  });

  // Bearer tokens (hono/bearer-auth), compared in constant time; with no API_TOKEN configured, fail closed.
  app.use("/api/*", async (c, next) => {
    if (!c.env.API_TOKEN) return problem(401, "the API has no token configured (set the API_TOKEN secret); every request is refused");
    return next();
  });
  app.use(
    "/api/*",
    bearerAuth({
      verifyToken: (token, c: C) => tokensEqual(token, c.env.API_TOKEN ?? ""),
      noAuthenticationHeader: { message: () => problem(401, "missing 'Authorization: Bearer <token>' header") },
      invalidAuthenticationHeader: { message: () => problem(401, "the Authorization header must be 'Bearer <token>', the token in RFC 6750's characters (letters, digits, - . _ ~ + /, trailing =)") },
      invalidToken: { message: () => problem(401, "invalid token") },
    }),
  );

  app.openapi(routes.examples, (c) => c.json({ examples: EXAMPLES }, 200));

  app.on("POST", "/api/guests", bodyLimit({ maxSize: LIMITS.createBodyBytes, onError: tooLarge(LIMITS.createBodyBytes) }));
  app.openapi(routes.create, async (c) => {
    const body = c.req.valid("json");
    const wrong = checkCreate(body);
    if (wrong) fail(400, wrong.message, { field: wrong.field });
    const memoryBytes = body.memoryPages * PAGE_SIZE;
    let image;
    try {
      image = buildImage(body.image, memoryBytes);
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      const field = `image.${Object.keys(body.image)[0]}`;
      fail(400, e.message, { field, ...e.detail });
    }
    const id = newGuestId();
    const config: GuestConfig = {
      id,
      name: body.name ?? id,
      mode: body.mode,
      memoryPages: body.memoryPages,
      diskSectors: body.diskSectors,
      createdAt: Date.now(),
      regions: body.regions ?? { primary: DEFAULT_PRIMARY_REGION, secondary: DEFAULT_SECONDARY_REGION },
      heartbeat: heartbeatFor(body),
      epochMs: body.epochMs,
      latency: body.latency,
      kemari: { ...DEFAULT_KEMARI, ...body.kemari },
    };
    const status = unwrap(await switchOf(c, id).create(config, image, body.paused));
    await addGuest(c.env, { id, name: config.name, createdAt: config.createdAt, ...summaryOf(status) });
    return c.json(status, 201, { location: `/api/guests/${id}` });
  });

  app.openapi(routes.list, async (c) => {
    const { limit, cursor } = c.req.valid("query");
    const page = await listGuests(c.env, limit, cursor ? decodeCursor(cursor) : null);
    return c.json(page as z.infer<typeof GuestList>, 200);
  });

  app.openapi(routes.status, async (c) => c.json(unwrap(await switchOf(c, c.req.valid("param").id).status()), 200));

  app.openapi(routes.remove, async (c) => {
    const { id } = c.req.valid("param");
    unwrap(await switchOf(c, id).destroy());
    await removeGuest(c.env, id);
    return c.body(null, 204);
  });

  const jsonLimit = bodyLimit({ maxSize: LIMITS.jsonBodyBytes, onError: tooLarge(LIMITS.jsonBodyBytes) });
  app.openapi(routes.pause, async (c) => c.json(unwrap(await switchOf(c, c.req.valid("param").id).pause()), 200));
  app.openapi(routes.resume, async (c) => c.json(unwrap(await switchOf(c, c.req.valid("param").id).resume()), 200));
  app.on("POST", "/api/guests/:id/step", jsonLimit);
  app.openapi(routes.step, async (c) => {
    // No body (or no Content-Type): one instruction.
    const { instructions = 1 } = c.req.valid("json");
    return c.json(unwrap(await switchOf(c, c.req.valid("param").id).step(instructions)), 200);
  });

  app.on("POST", "/api/guests/:id/faults", jsonLimit);
  app.openapi(routes.fault, async (c) => {
    const fault = c.req.valid("json");
    const { hosts } = unwrap(await switchOf(c, c.req.valid("param").id).fault(fault));
    return c.json({ ...fault, hosts }, 202);
  });

  app.openapi(routes.console, async (c) => c.json(unwrap(await switchOf(c, c.req.valid("param").id).console(c.req.valid("query").from)), 200));

  app.on("POST", "/api/guests/:id/inbound", bodyLimit({ maxSize: LIMITS.packetBytes, onError: tooLarge(LIMITS.packetBytes) }));
  app.openapi(routes.inbound, async (c) => {
    const { id } = c.req.valid("param");
    const packet = new Uint8Array(await c.req.arrayBuffer());
    if (packet.length === 0) fail(400, "a packet must have at least one byte", { field: "body" });
    unwrap(await switchOf(c, id).inbound(packet));
    return c.json({ accepted: packet.length }, 202);
  });

  app.openapi(routes.outbound, async (c) => {
    const { packets, next } = unwrap(await switchOf(c, c.req.valid("param").id).outbound(c.req.valid("query").from));
    return c.json({ packets: packets.map((p) => ({ index: p.index, data: encodeBase64(p.data) })), next }, 200);
  });

  app.openapi(routes.memory, async (c) => {
    const { addr, len } = c.req.valid("query");
    return octets(unwrap(await switchOf(c, c.req.valid("param").id).memory(addr, len)));
  });

  app.openapi(routes.disk, async (c) => {
    const { sector, count, view } = c.req.valid("query");
    return octets(unwrap(await switchOf(c, c.req.valid("param").id).disk(sector, count, view)));
  });

  // A path the API has, asked with a method it does not take: 405, with the methods it does.
  const known = app.routes.filter((r) => r.method !== "ALL").map((r) => ({ method: r.method, pattern: routePattern(r.path) }));
  app.all("/api/*", (c) => {
    const path = new URL(c.req.url).pathname;
    const allowed = [...new Set(known.filter((r) => r.pattern.test(path)).map((r) => r.method))].sort();
    if (allowed.length > 0) return problem(405, `${path} does not take ${c.req.method}; it takes ${allowed.join(", ")}`, {}, { allow: allowed.join(", ") });
    return problem(404, `no route ${c.req.method} ${path}`);
  });

  app.onError((err, _c) => {
    if (err instanceof HTTPException) return httpProblem(err);
    if (err instanceof GuestError) return problem(ERROR_STATUS[err.code], err.detail, err.field ? { field: err.field } : {});
    console.error("unhandled error", err instanceof Error ? err.stack : err);
    return problem(500, "internal error");
  });

  return app;
}

/** Hono's own exceptions (a bad Content-Type, malformed JSON, a refused token) as problems. */
function httpProblem(err: HTTPException): Response {
  const res = err.getResponse();
  if (res.headers.get("content-type")?.startsWith("application/problem+json")) return res;
  if (err.status === 415) return problem(415, "the body must be JSON (Content-Type: application/json)");
  if (err.status === 400) return problem(400, /json/i.test(err.message) ? "the body is not valid JSON" : err.message, { field: "body" });
  return problem(err.status, err.message || res.statusText);
}

/** A Hono route path ("/api/guests/:id/step") as a regular expression for one request path. */
function routePattern(path: string): RegExp {
  const body = path.split("/").map((seg) => (seg.startsWith(":") ? "[^/]+" : seg === "*" ? ".*" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("/");
  return new RegExp(`^${body}$`);
}

function octets(bytes: Uint8Array): Response {
  return new Response(bytes, { headers: { "content-type": "application/octet-stream" } });
}
