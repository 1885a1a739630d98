/**
 * The HTTP API (Hono). Every guest is reached through its switch Durable
 * Object; input is validated here, in the Worker, before any object is
 * touched, so bad input never reaches an existing guest.
 */
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { secureHeaders } from "hono/secure-headers";
import type { z } from "zod";
import type { Env } from "../env.ts";
import { ERROR_STATUS, GuestError, unwrap } from "../host/errors.ts";
import { DEFAULT_KEMARI, type GuestConfig } from "../host/guest-config.ts";
import { DEFAULT_PRIMARY_REGION, DEFAULT_SECONDARY_REGION } from "../kemari/placement.ts";
import { ImageError } from "../image/image.ts";
import { buildImage, encodeBase64 } from "../image/load.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import { requireToken } from "./auth.ts";
import { EXAMPLES } from "./examples.ts";
import { openApiDocument } from "./openapi.ts";
import { problem } from "./problem.ts";
import { checkCreate, CreateGuest, heartbeatFor, DiskQuery, FaultRequest, FromQuery, GuestId, LIMITS, MemoryQuery, Step } from "./schemas.ts";

type App = { Bindings: Env };
type C = Context<App>;

/** A validation failure, turned into a problem naming the field at fault. */
class Invalid extends Error {
  constructor(readonly response: Response) {
    super("invalid request");
  }
}

function fieldOf(path: PropertyKey[]): string {
  return path.map(String).join(".");
}

function validate<S extends z.ZodType>(schema: S, input: unknown, where: "body" | "query"): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const errors = r.error.issues.map((i) => ({ field: fieldOf(i.path) || where, message: i.message }));
  const first = errors[0];
  throw new Invalid(problem(400, `${first.field}: ${first.message}`, { field: first.field, errors }));
}

async function jsonBody(c: C): Promise<unknown> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/(.+\+)?json\b/i.test(type)) throw new Invalid(problem(415, "the body must be JSON (Content-Type: application/json)"));
  try {
    return await c.req.json();
  } catch {
    throw new Invalid(problem(400, "the body is not valid JSON", { field: "body" }));
  }
}

function guestId(c: C): string {
  const id = c.req.param("id") ?? "";
  if (!GuestId.safeParse(id).success) throw new Invalid(problem(404, `no guest '${id}'`, { field: "id" }));
  return id;
}

function switchOf(c: C, id: string) {
  return c.env.SWITCH.get(c.env.SWITCH.idFromName(id));
}

function directory(c: C) {
  return c.env.DIRECTORY.get(c.env.DIRECTORY.idFromName("directory"));
}

function newGuestId(): string {
  return `g-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

const tooLarge = (limit: number) => () => problem(413, `the body is larger than ${limit} bytes`);

export function createApp(): Hono<App> {
  const app = new Hono<App>();

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
  app.use("*", async (c, next) => (c.req.header("upgrade")?.toLowerCase() === "websocket" ? next() : headers(c, next)));

  app.get("/api/openapi.json", (c) => c.json(openApiDocument()));
  // The live event stream: a browser cannot set an Authorization header on a
  // WebSocket, so the token comes as the socket's first message (see src/events/messages.ts).
  app.get("/api/guests/:id/events", async (c) => {
    const id = guestId(c);
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return problem(426, "this is a WebSocket endpoint (Upgrade: websocket)");
    // Before any token (it comes as the socket's first message): a stranger's request for an id
    // that is not a guest must not create its switch, and with it a database.
    if (!(await directory(c).has(id))) return problem(404, `no guest '${id}'`, { field: "id" });
    return switchOf(c, id).fetch(c.req.raw);
  });

  app.use("/api/*", requireToken());

  app.get("/api/examples", (c) => c.json({ examples: EXAMPLES }));

  app.post("/api/guests", bodyLimit({ maxSize: LIMITS.createBodyBytes, onError: tooLarge(LIMITS.createBodyBytes) }), async (c) => {
    const body = validate(CreateGuest, await jsonBody(c), "body");
    const wrong = checkCreate(body);
    if (wrong) return problem(400, wrong.message, { field: wrong.field });
    const memoryBytes = body.memoryPages * PAGE_SIZE;
    let image;
    try {
      image = buildImage(body.image, memoryBytes);
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      const field = `image.${Object.keys(body.image)[0]}`;
      return problem(400, e.message, { field, ...e.detail });
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
    await directory(c).add({ id, name: config.name, createdAt: config.createdAt });
    return c.json(status, 201, { location: `/api/guests/${id}` });
  });

  app.get("/api/guests", async (c) => {
    const entries = await directory(c).list();
    const guests = await Promise.all(
      entries.map((e) =>
        switchOf(c, e.id)
          .status()
          .then(unwrap)
          .catch((err: unknown) => ({ id: e.id, name: e.name, state: "unknown", error: String(err) })),
      ),
    );
    return c.json({ guests });
  });

  app.get("/api/guests/:id", async (c) => c.json(unwrap(await switchOf(c, guestId(c)).status())));

  app.delete("/api/guests/:id", async (c) => {
    const id = guestId(c);
    unwrap(await switchOf(c, id).destroy());
    await directory(c).remove(id);
    return c.body(null, 204);
  });

  const json = bodyLimit({ maxSize: LIMITS.jsonBodyBytes, onError: tooLarge(LIMITS.jsonBodyBytes) });
  app.post("/api/guests/:id/pause", async (c) => c.json(unwrap(await switchOf(c, guestId(c)).pause())));
  app.post("/api/guests/:id/resume", async (c) => c.json(unwrap(await switchOf(c, guestId(c)).resume())));
  app.post("/api/guests/:id/step", json, async (c) => {
    const id = guestId(c);
    const hasBody = (c.req.header("content-length") ?? "0") !== "0" || c.req.header("transfer-encoding");
    const { instructions } = validate(Step, hasBody ? await jsonBody(c) : {}, "body");
    return c.json(unwrap(await switchOf(c, id).step(instructions)));
  });

  app.post("/api/guests/:id/faults", json, async (c) => {
    const id = guestId(c);
    const fault = validate(FaultRequest, await jsonBody(c), "body");
    const { hosts } = unwrap(await switchOf(c, id).fault(fault));
    return c.json({ ...fault, hosts }, 202);
  });

  app.get("/api/guests/:id/console", async (c) => {
    const id = guestId(c);
    const { from } = validate(FromQuery, c.req.query(), "query");
    return c.json(unwrap(await switchOf(c, id).console(from)));
  });

  app.post(
    "/api/guests/:id/inbound",
    bodyLimit({ maxSize: LIMITS.packetBytes, onError: tooLarge(LIMITS.packetBytes) }),
    async (c) => {
      const id = guestId(c);
      const packet = new Uint8Array(await c.req.arrayBuffer());
      if (packet.length === 0) return problem(400, "a packet must have at least one byte", { field: "body" });
      unwrap(await switchOf(c, id).inbound(packet));
      return c.json({ accepted: packet.length }, 202);
    },
  );

  app.get("/api/guests/:id/outbound", async (c) => {
    const id = guestId(c);
    const { from } = validate(FromQuery, c.req.query(), "query");
    const { packets, next } = unwrap(await switchOf(c, id).outbound(from));
    return c.json({ packets: packets.map((p) => ({ index: p.index, data: encodeBase64(p.data) })), next });
  });

  app.get("/api/guests/:id/memory", async (c) => {
    const id = guestId(c);
    const { addr, len } = validate(MemoryQuery, c.req.query(), "query");
    return octets(unwrap(await switchOf(c, id).memory(addr, len)));
  });

  app.get("/api/guests/:id/disk", async (c) => {
    const id = guestId(c);
    const { sector, count, view } = validate(DiskQuery, c.req.query(), "query");
    return octets(unwrap(await switchOf(c, id).disk(sector, count, view)));
  });

  // A path the API has, asked with a method it does not take: 405, with the methods it does.
  const routes = app.routes.filter((r) => r.method !== "ALL").map((r) => ({ method: r.method, pattern: routePattern(r.path) }));
  app.all("/api/*", (c) => {
    const path = new URL(c.req.url).pathname;
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method))].sort();
    if (allowed.length > 0) return problem(405, `${path} does not take ${c.req.method}; it takes ${allowed.join(", ")}`, {}, { allow: allowed.join(", ") });
    return problem(404, `no route ${c.req.method} ${path}`);
  });

  app.onError((err, _c) => {
    if (err instanceof Invalid) return err.response;
    if (err instanceof GuestError) return problem(ERROR_STATUS[err.code], err.detail, err.field ? { field: err.field } : {});
    console.error("unhandled error", err instanceof Error ? err.stack : err);
    return problem(500, "internal error");
  });

  return app;
}

/** A Hono route path ("/api/guests/:id/step") as a regular expression for one request path. */
function routePattern(path: string): RegExp {
  const body = path.split("/").map((seg) => (seg.startsWith(":") ? "[^/]+" : seg === "*" ? ".*" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))).join("/");
  return new RegExp(`^${body}$`);
}

function octets(bytes: Uint8Array): Response {
  return new Response(bytes, { headers: { "content-type": "application/octet-stream" } });
}
