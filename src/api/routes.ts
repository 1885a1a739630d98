/**
 * Every route of the API, declared once with its request and response
 * schemas (@hono/zod-openapi): the same declaration validates requests, types
 * the handlers (src/api/app.ts) and the client, and generates the OpenAPI 3.1
 * document. Limits live in src/api/schemas.ts and appear in all three.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { Accepted, ConsolePage, Examples, FaultAccepted, GuestList, GuestStatus, Outbound, Problem, StepResult } from "./responses.ts";
import { CreateGuest, DiskQuery, FaultRequest, FromQuery, GuestId, ListQuery, MemoryQuery, Step } from "./schemas.ts";

const problem = (description: string) => ({ description, content: { "application/problem+json": { schema: Problem } } });
const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { "application/json": { schema } } });
const octets = (description: string) => ({ description, content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } });

/** The problems any authenticated route may answer. */
const errors = {
  400: problem("The request is invalid: `field` (or `line`/`column` for assembly) names what is at fault"),
  401: problem("No token, or a wrong one"),
  404: problem("No such guest"),
  409: problem("The guest cannot do that now (e.g. resume a guest that is not paused)"),
  503: problem("The guest's host cannot be reached right now"),
} as const;

const Params = z.object({ id: GuestId.openapi({ param: { name: "id", in: "path" }, example: "g-0123456789ab" }) });
const security = [{ bearer: [] }];
const jsonBody = <S extends z.ZodType>(schema: S, required = true) => ({ required, content: { "application/json": { schema } } });

/** POST /api/guests/{id}/<verb>: a control with no body that answers the guest's status. */
function control<V extends string>(verb: V, summary: string) {
  return createRoute({
    method: "post",
    path: `/api/guests/{id}/${verb}` as `/api/guests/{id}/${V}`,
    summary,
    security,
    request: { params: Params },
    responses: { 200: json(GuestStatus, "Its status"), 401: errors[401], 404: errors[404], 409: errors[409], 503: errors[503] },
  });
}

export const routes = {
  events: createRoute({
    method: "get",
    path: "/api/guests/{id}/events",
    summary: "The guest's live event stream (WebSocket): send {\"type\":\"auth\",\"token\":…} first",
    request: { params: Params },
    responses: {
      101: { description: "Switching to the WebSocket protocol: a snapshot, then live events (src/events/messages.ts)" },
      404: errors[404],
      426: problem("Not a WebSocket request"),
    },
  }),
  examples: createRoute({
    method: "get",
    path: "/api/examples",
    summary: "The example guests' sources",
    security,
    responses: { 200: json(Examples, "The examples"), 401: errors[401] },
  }),
  create: createRoute({
    method: "post",
    path: "/api/guests",
    summary: "Create a guest from an image (assembly, ELF or flat binary)",
    security,
    request: { body: jsonBody(CreateGuest) },
    responses: {
      201: json(GuestStatus, "The new guest's status (Location: its URL)"),
      400: errors[400],
      401: errors[401],
      413: problem("The body is too large"),
      415: problem("The body is not JSON"),
    },
  }),
  list: createRoute({
    method: "get",
    path: "/api/guests",
    summary: "The guests, newest first, a page at a time (each a summary: no guest is called)",
    security,
    request: { query: ListQuery },
    responses: { 200: json(GuestList, "A page of guests, and the cursor of the next"), 400: errors[400], 401: errors[401] },
  }),
  status: createRoute({
    method: "get",
    path: "/api/guests/{id}",
    summary: "A guest's status",
    security,
    request: { params: Params },
    responses: { 200: json(GuestStatus, "Its status"), 401: errors[401], 404: errors[404], 503: errors[503] },
  }),
  remove: createRoute({
    method: "delete",
    path: "/api/guests/{id}",
    summary: "Delete a guest and everything stored for it",
    security,
    request: { params: Params },
    responses: { 204: { description: "Deleted" }, 401: errors[401], 404: errors[404] },
  }),
  pause: control("pause", "Pause a running or waiting guest"),
  resume: control("resume", "Resume a paused guest or one stopped at a breakpoint"),
  step: createRoute({
    method: "post",
    path: "/api/guests/{id}/step",
    summary: "Run a paused guest for some instructions (at most a slice's worth per request: ask again for more)",
    security,
    request: { params: Params, body: jsonBody(Step, false) },
    responses: { 200: json(StepResult, "Its status, and how many instructions ran"), ...errors, 413: problem("The body is too large"), 415: problem("The body is not JSON") },
  }),
  fault: createRoute({
    method: "post",
    path: "/api/guests/{id}/faults",
    summary: "Inject a fault: crash a host (now, at a protocol step, or at an instruction count), cut it off, or heal",
    security,
    request: { params: Params, body: jsonBody(FaultRequest) },
    responses: { 202: json(FaultAccepted, "The fault, and the hosts it went to"), ...errors, 413: problem("The body is too large"), 415: problem("The body is not JSON") },
  }),
  console: createRoute({
    method: "get",
    path: "/api/guests/{id}/console",
    summary: "Console output from a byte offset",
    security,
    request: { params: Params, query: FromQuery },
    responses: { 200: json(ConsolePage, "The text, and the offset to ask for next"), 400: errors[400], 401: errors[401], 404: errors[404] },
  }),
  inbound: createRoute({
    method: "post",
    path: "/api/guests/{id}/inbound",
    summary: "A packet for the guest's net-rx device (the raw bytes are the body)",
    security,
    request: { params: Params, body: { required: true, content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } } },
    responses: { 202: json(Accepted, "Accepted"), ...errors, 413: problem("The packet is too large") },
  }),
  outbound: createRoute({
    method: "get",
    path: "/api/guests/{id}/outbound",
    summary: "Packets the guest sent, from a net-tx index",
    security,
    request: { params: Params, query: FromQuery },
    responses: { 200: json(Outbound, "The packets, and the index to ask for next"), 400: errors[400], 401: errors[401], 404: errors[404] },
  }),
  memory: createRoute({
    method: "get",
    path: "/api/guests/{id}/memory",
    summary: "Raw bytes of guest memory (the primary's, live)",
    security,
    request: { params: Params, query: MemoryQuery },
    responses: { 200: octets("The bytes"), ...errors },
  }),
  disk: createRoute({
    method: "get",
    path: "/api/guests/{id}/disk",
    summary: "Raw disk sectors: the acknowledged disk (default), or the primary's live one",
    security,
    request: { params: Params, query: DiskQuery },
    responses: { 200: octets("The sectors"), ...errors },
  }),
} as const;
