/**
 * Response schemas: what every route answers, declared once. They document
 * the API (the OpenAPI document is generated from them and the request
 * schemas, src/api/routes.ts) and a test checks real responses of every
 * route against them (test/openapi.test.ts). Objects are strict: a field the
 * API starts sending without a schema here fails that test.
 */
import { z } from "@hono/zod-openapi";

const HostPlace = z.strictObject({ name: z.string(), region: z.string().nullable() }).openapi("HostPlace");

const Fault = z.strictObject({ reason: z.string(), pc: z.number().int() });

const Counters = z.strictObject({
  events: z.number().int().describe("NOTIFYs delivered to backends"),
  outputs: z.number().int(),
  consoleBytes: z.number().int(),
  packetsOut: z.number().int(),
  packetsIn: z.number().int(),
});

const Device = z
  .strictObject({
    kind: z.string().describe("console, net-tx, net-rx or blk"),
    port: z.number().int(),
    ring: z.number().int().describe("the ring's guest-physical address"),
    reqProd: z.number().int(),
    rspProd: z.number().int(),
    reqCons: z.number().int().describe("the backend's private consumer cursor (not replicated)"),
    requests: z.number().int(),
    errors: z.number().int(),
  })
  .openapi("Device");

const SyncStats = z.strictObject({
  seq: z.number().int(),
  full: z.boolean(),
  pages: z.number().int(),
  dirtyBytes: z.number().int(),
  sentBytes: z.number().int(),
  deltaSaved: z.number().int(),
  frames: z.number().int(),
  sentPages: z.array(z.number().int()).describe("the page numbers sent (the first 1024)"),
  instructions: z.number().int().describe("the guest's instruction count the checkpoint holds"),
});

const Sync = z
  .strictObject({
    seq: z.number().int().describe("the last checkpoint the secondary acknowledged"),
    syncs: z.number().int(),
    pagesSent: z.number().int(),
    bytesDirtied: z.number().int(),
    bytesSent: z.number().int(),
    deltaSaved: z.number().int(),
    lastPauseMs: z.number(),
    lastFlightMs: z.number(),
    totalPauseMs: z.number(),
    heldOutputs: z.number().int().describe("mode remus: outputs held until their epoch is acknowledged"),
    inFlight: z.strictObject({ seq: z.number().int(), bytes: z.number().int(), pages: z.number().int(), sinceMs: z.number() }).nullable(),
    epochOpen: z.boolean(),
    last: SyncStats.nullable(),
  })
  .openapi("Sync");

const Link = z.strictObject({
  from: z.enum(["primary", "secondary"]),
  fromRegion: z.string(),
  to: z.enum(["secondary", "witness"]),
  toRegion: z.string(),
  rttMs: z.number(),
  mbps: z.number().nullable(),
});

const Failover = z.strictObject({
  generation: z.number().int(),
  reason: z.string(),
  from: HostPlace,
  to: HostPlace,
  at: z.number().describe("when the witness decided (epoch ms)"),
  takeoverMs: z.number(),
});

const LatencyOut = z.union([z.enum(["none", "by-region"]), z.strictObject({ rttMs: z.number(), mbps: z.number().optional() })]);

const hostFields = {
  state: z.enum(["running", "waiting", "paused", "breakpoint", "halted", "crashed"]).describe("halted only once every output has reached the switch"),
  exitCode: z.number().int().nullable(),
  crash: Fault.nullable(),
  pc: z.number().int(),
  instructions: z.number().int(),
  pending: z.number().int().describe("event channels pending, a bit per port"),
  dirtyPages: z.number().int(),
  rxDropped: z.number().int(),
  counters: Counters,
  devices: z.array(Device),
  sync: Sync.nullable().describe("modes kemari and remus"),
  outputsInFlight: z.number().int().describe("outputs not yet at the switch"),
  idleSaved: z.boolean().describe("the idle guest is saved in its host's storage: an eviction costs nothing"),
};

export const GuestStatus = z
  .strictObject({
    id: z.string(),
    name: z.string(),
    mode: z.enum(["none", "kemari", "remus"]),
    memoryPages: z.number().int(),
    diskSectors: z.number().int(),
    createdAt: z.number(),
    generation: z.number().int(),
    protection: z.enum(["protected", "unprotected", "failing-over", "reprotecting"]),
    hosts: z.strictObject({ primary: HostPlace, secondary: HostPlace.nullable() }),
    heartbeat: z.strictObject({ intervalMs: z.number().int(), timeoutMs: z.number().int() }).nullable(),
    epochMs: z.number().int().nullable(),
    kemari: z.strictObject({ syncOn: z.enum(["outputs", "every-event"]), pipeline: z.boolean() }).nullable(),
    latency: LatencyOut,
    links: z.array(Link),
    failovers: z.array(Failover),
    fencedReleases: z.number().int().describe("outputs the switch refused from a superseded primary"),
    ...hostFields,
  })
  .openapi("GuestStatus");

export const StepResult = z.strictObject({ ...GuestStatus.shape, executed: z.number().int().describe("instructions executed by this request (ask again for more)") }).openapi("StepResult");

/** A guest in the list: the summary its switch keeps in the directory (null: not reported yet, a guest listed before summaries). */
export const ListedGuest = z
  .strictObject({
    id: z.string(),
    name: z.string(),
    createdAt: z.number(),
    mode: z.enum(["none", "kemari", "remus"]).nullable(),
    generation: z.number().int().nullable(),
    protection: z.enum(["protected", "unprotected", "failing-over", "reprotecting"]).nullable(),
    state: z.enum(["running", "halted", "crashed"]).nullable().describe("coarse: running also covers waiting, paused and a breakpoint (see the guest's status)"),
  })
  .openapi("ListedGuest");

export const GuestList = z
  .strictObject({ guests: z.array(ListedGuest).describe("newest first"), next: z.string().nullable().describe("the cursor of the next page; null at the end") })
  .openapi("GuestList");

export const Examples = z
  .strictObject({ examples: z.array(z.strictObject({ name: z.string(), title: z.string(), source: z.string().describe("assembly") })) })
  .openapi("Examples");

export const FaultAccepted = z
  .strictObject({
    target: z.enum(["primary", "secondary"]),
    kind: z.enum(["crash", "partition", "heal"]),
    at: z.union([z.string(), z.strictObject({ instruction: z.number().int() })]),
    hosts: z.array(HostPlace).describe("the hosts the fault went to"),
  })
  .openapi("FaultAccepted");

export const ConsolePage = z.strictObject({ text: z.string(), next: z.number().int().describe("the offset to ask for next") }).openapi("ConsolePage");

export const Outbound = z
  .strictObject({
    packets: z.array(z.strictObject({ index: z.number().int().describe("its net-tx request index"), data: z.string().describe("base64") })),
    next: z.number().int().describe("the index to ask for next"),
  })
  .openapi("Outbound");

export const Accepted = z.strictObject({ accepted: z.number().int().describe("bytes accepted") }).openapi("Accepted");

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    field: z.string().optional().describe("the request field at fault, as a dotted path"),
    line: z.number().int().optional(),
    column: z.number().int().optional(),
    expected: z.string().optional(),
    offset: z.number().int().optional(),
    errors: z.array(z.strictObject({ field: z.string(), message: z.string() })).optional(),
  })
  .catchall(z.unknown())
  .openapi("Problem");
