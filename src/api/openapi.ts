/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate
 * requests, so the documented limits are the enforced ones.
 */
import { z } from "zod";
import { CreateGuest, DiskQuery, FaultRequest, FromQuery, LIMITS, MemoryQuery, Mode, Step } from "./schemas.ts";

const schema = (s: z.ZodType) => z.toJSONSchema(s, { io: "input", unrepresentable: "any" });

function queryParams(s: z.ZodObject): object[] {
  const json = schema(s) as { properties?: Record<string, object>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, sch]) => ({
    name,
    in: "query",
    required: (json.required ?? []).includes(name),
    schema: sch,
  }));
}

const problem = {
  description: "An RFC 9457 problem: `field` (or `line`/`column` for assembly) names what is at fault",
  content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } },
};
const errors = { 400: problem, 401: problem, 404: problem, 409: problem, 410: problem, 413: problem };
const status = { description: "The guest's status", content: { "application/json": { schema: { $ref: "#/components/schemas/GuestStatus" } } } };
const idParam = { name: "id", in: "path", required: true, schema: { type: "string", pattern: "^g-[0-9a-f]{12}$" } };

let cached: object | null = null;

export function openApiDocument(): object {
  if (cached) return cached;
  const guestOp = (summary: string, extra: object = {}) => ({ summary, parameters: [idParam], responses: { 200: status, ...errors }, ...extra });
  cached = {
    openapi: "3.1.0",
    info: {
      title: "Kemari on Durable Objects",
      version: "0.1.0",
      description:
        "Run RV32IM guests on Durable Objects. Every route except this document and GET / needs `Authorization: Bearer <API_TOKEN>`.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        CreateGuest: schema(CreateGuest),
        Step: schema(Step),
        FaultRequest: schema(FaultRequest),
        Problem: {
          type: "object",
          required: ["type", "title", "status", "detail"],
          properties: {
            type: { type: "string" }, title: { type: "string" }, status: { type: "integer" }, detail: { type: "string" },
            field: { type: "string" }, line: { type: "integer" }, column: { type: "integer" }, expected: { type: "string" },
            offset: { type: "integer" },
            errors: { type: "array", items: { type: "object", properties: { field: { type: "string" }, message: { type: "string" } } } },
          },
        },
        GuestStatus: {
          type: "object",
          required: ["id", "name", "mode", "state", "exitCode", "crash", "pc", "instructions", "generation", "protection", "counters"],
          properties: {
            id: { type: "string" }, name: { type: "string" }, mode: { type: "string", enum: [...Mode.options] },
            state: { type: "string", enum: ["running", "waiting", "paused", "breakpoint", "halted", "crashed"] },
            exitCode: { type: ["integer", "null"] },
            crash: { type: ["object", "null"], properties: { reason: { type: "string" }, pc: { type: "integer" } } },
            pc: { type: "integer" }, instructions: { type: "integer" }, generation: { type: "integer" },
            protection: { type: "string", enum: ["protected", "unprotected", "failing-over", "reprotecting"] },
            hosts: { type: "object", description: "`{ primary: {name, region}, secondary: {name, region} | null }`" },
            failovers: { type: "array", items: { type: "object" }, description: "`{ generation, reason, from, to, at, takeoverMs }`" },
            sync: { type: ["object", "null"], description: "checkpoints: seq, syncs, pagesSent, bytesDirtied, bytesSent, deltaSaved, lastPauseMs" },
            memoryPages: { type: "integer" }, diskSectors: { type: "integer" }, pending: { type: "integer" }, dirtyPages: { type: "integer" },
            counters: { type: "object", additionalProperties: { type: "integer" } },
            devices: { type: "array", items: { type: "object" } },
          },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      "/api/guests": {
        post: {
          summary: "Create a guest; it starts running at once",
          requestBody: {
            required: true,
            description: `At most ${LIMITS.createBodyBytes} bytes; ELF/flat images at most ${LIMITS.binaryImageBytes} bytes, assembly at most ${LIMITS.asmChars} characters`,
            content: { "application/json": { schema: { $ref: "#/components/schemas/CreateGuest" } } },
          },
          responses: { 201: status, ...errors, 415: problem },
        },
        get: { summary: "List guests", responses: { 200: { description: "`{ guests: GuestStatus[] }`" }, 401: problem } },
      },
      "/api/guests/{id}": {
        get: guestOp("A guest's status"),
        delete: { summary: "Delete a guest", parameters: [idParam], responses: { 204: { description: "Deleted" }, ...errors } },
      },
      "/api/guests/{id}/pause": { post: guestOp("Pause a running or waiting guest") },
      "/api/guests/{id}/resume": { post: guestOp("Resume a paused guest or one stopped at a breakpoint") },
      "/api/guests/{id}/step": {
        post: guestOp("Execute instructions of a paused guest, then pause again: at most a slice's worth (1,000,000 instructions or 16 device events) per request; the answer's `executed` says how many ran, so ask again for the rest", {
          requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/Step" } } } },
        }),
      },
      "/api/guests/{id}/faults": {
        post: {
          summary: "Inject a fault: crash a host (now or at a step of the next sync), cut its links, or heal them",
          parameters: [idParam],
          requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/FaultRequest" } } } },
          responses: { 202: { description: "`{ target, kind, at, hosts }`" }, ...errors },
        },
      },
      "/api/guests/{id}/events": {
        get: {
          summary: "The live event stream (WebSocket): send `{type:'auth', token}` first; a snapshot follows, then events (README, src/events/messages.ts)",
          parameters: [idParam],
          security: [],
          responses: { 101: { description: "Switching Protocols" }, 426: problem },
        },
      },
      "/api/examples": {
        get: { summary: "The example guests' sources", responses: { 200: { description: "`{ examples: [{ name, title, source }] }`" }, 401: problem } },
      },
      "/api/guests/{id}/console": {
        get: {
          summary: "Console output from byte offset `from`",
          parameters: [idParam, ...queryParams(FromQuery)],
          responses: { 200: { description: "`{ text, next }`" }, ...errors },
        },
      },
      "/api/guests/{id}/inbound": {
        post: {
          summary: `Deliver one packet (the raw body, 1..${LIMITS.packetBytes} bytes) to the guest's net-rx device`,
          parameters: [idParam],
          requestBody: { content: { "application/octet-stream": { schema: { type: "string", format: "binary", maxLength: LIMITS.packetBytes } } } },
          responses: { 202: { description: "Accepted" }, ...errors },
        },
      },
      "/api/guests/{id}/outbound": {
        get: {
          summary: "Packets the guest sent, from net-tx request index `from`",
          parameters: [idParam, ...queryParams(FromQuery)],
          responses: { 200: { description: "`{ packets: [{ index, data (base64) }], next }`" }, ...errors },
        },
      },
      "/api/guests/{id}/memory": {
        get: {
          summary: "Raw bytes of guest memory (a live view of the primary: a failover may take back what no checkpoint holds yet)",
          parameters: [idParam, ...queryParams(MemoryQuery)],
          responses: { 200: { description: "application/octet-stream" }, ...errors },
        },
      },
      "/api/guests/{id}/disk": {
        get: {
          summary: "Raw sectors of the guest's virtual disk: by default the acknowledged disk (what a takeover resumes with, never taken back); view=live for the primary's current disk",
          parameters: [idParam, ...queryParams(DiskQuery)],
          responses: { 200: { description: "application/octet-stream" }, ...errors },
        },
      },
    },
  };
  return cached;
}
