/**
 * Request schemas: the single source of validation and of the OpenAPI document.
 * Limits are stated here once and appear in both.
 */
import { z } from "zod";
import { DEFAULT_DISK_SECTORS, MAX_DISK_SECTORS } from "../guest/abi.ts";
import { DEFAULT_PAGES, MAX_PAGES, MIN_PAGES } from "../guest/memory.ts";
import { DEFAULT_EPOCH_MS, DEFAULT_HEARTBEAT, DEFAULT_KEMARI } from "../host/guest-config.ts";
import { linkSpec } from "../protocol/link-model.ts";
import { FAULT_KINDS, FAULT_STEPS, FAULT_TARGETS } from "../kemari/faults.ts";
import { DEFAULT_PRIMARY_REGION, DEFAULT_SECONDARY_REGION, REGIONS } from "../kemari/placement.ts";
import { decodeCursor, PAGE_DEFAULT, PAGE_MAX } from "./cursor.ts";

export const LIMITS = {
  /** Decoded size of an ELF or flat image. */
  binaryImageBytes: 1 << 20,
  /** Characters of assembly source. */
  asmChars: 256 * 1024,
  /** A create request's body (a base64 image of 1 MiB is ≈ 1.4 MB). */
  createBodyBytes: 2 << 20,
  /** Any other JSON body. */
  jsonBodyBytes: 16 * 1024,
  packetBytes: 4096,
  stepInstructions: 10_000_000,
  memoryReadBytes: 1 << 20,
  diskReadSectors: 2048,
} as const;

const base64 = (what: string) =>
  z
    .string()
    .max(Math.ceil(LIMITS.binaryImageBytes / 3) * 4, `${what} image is larger than ${LIMITS.binaryImageBytes} bytes`)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, `${what} must be base64`)
    .refine((s) => s.length % 4 === 0, `${what} must be base64 (length a multiple of 4)`);

export const ImageSpec = z.union([
  z.strictObject({ asm: z.string().max(LIMITS.asmChars, `assembly source is longer than ${LIMITS.asmChars} characters`).describe("GNU as syntax RISC-V assembly") }),
  z.strictObject({ elf: base64("ELF").describe("base64 of an ELF32 RISC-V executable") }),
  z.strictObject({ flat: base64("flat").describe("base64 of a flat binary loaded at 0, entry 0") }),
]);
export type ImageSpec = z.infer<typeof ImageSpec>;

export const Mode = z
  .enum(["none", "kemari", "remus"])
  .describe(
    "how the guest is protected: kemari synchronises a secondary at every device event; remus checkpoints every epochMs and holds outputs until their epoch is acknowledged; none keeps no copy",
  );

const Region = z.enum(REGIONS).describe("a Durable Object location hint");

export const Regions = z
  .strictObject({
    primary: Region.default(DEFAULT_PRIMARY_REGION),
    secondary: Region.default(DEFAULT_SECONDARY_REGION),
    witness: Region.optional().describe("where the switch (the witness) is placed; default: the primary's region"),
  })
  .refine((r) => r.primary !== r.secondary, { message: "the primary and the secondary must be in different regions", path: ["secondary"] })
  .describe("where the primary and the secondary host (modes kemari and remus) and the switch are placed");

export const Latency = z
  .union([
    z.enum(["none", "by-region"]),
    z.strictObject({
      rttMs: z.number().min(0).max(2000).describe("round trip between any two of the guest's objects in different regions, milliseconds"),
      mbps: z.number().min(1).max(100_000).optional().describe("bandwidth of each direction, megabits per second (default: not limited)"),
    }),
  ])
  .default("none")
  .describe("the link model between the guest's objects in different regions: none; by-region (typical round trips between the location hints); or a fixed round trip and bandwidth");

export const KemariOptions = z
  .strictObject({
    syncOn: z.enum(["outputs", "every-event"]).default(DEFAULT_KEMARI.syncOn).describe("outputs: a checkpoint precedes every event that leaves the guest (console, net-tx); every-event: at block events too (Kemari v1.0)"),
    pipeline: z.boolean().default(DEFAULT_KEMARI.pipeline).describe("true: the guest runs on while its checkpoint is in flight; false: stop-and-wait (Kemari v1.0)"),
  })
  .describe("mode kemari only: when the event tap synchronises, and how");

export const Heartbeat = z
  .strictObject({
    intervalMs: z.number().int().min(20).max(10_000).default(DEFAULT_HEARTBEAT.intervalMs).describe("how often the witness pings the primary"),
    timeoutMs: z.number().int().min(50).max(60_000).default(DEFAULT_HEARTBEAT.timeoutMs).describe("a primary silent this long is failed over"),
  })
  .refine((h) => h.timeoutMs >= h.intervalMs, { message: "timeoutMs must be at least intervalMs", path: ["timeoutMs"] });

export const CreateGuest = z.strictObject({
  image: ImageSpec,
  mode: Mode.default("kemari"),
  regions: Regions.optional(),
  heartbeat: Heartbeat.optional(),
  epochMs: z.number().int().min(5).max(1000).default(DEFAULT_EPOCH_MS).describe("mode remus: milliseconds between checkpoints"),
  latency: Latency,
  kemari: KemariOptions.optional(),
  paused: z.boolean().default(false).describe("create the guest paused (resume it with POST /resume): time to arm a fault first"),
  memoryPages: z.number().int().min(MIN_PAGES).max(MAX_PAGES).default(DEFAULT_PAGES).describe("guest memory in 4 KiB pages"),
  diskSectors: z.number().int().min(1).max(MAX_DISK_SECTORS).default(DEFAULT_DISK_SECTORS).describe("virtual disk in 512-byte sectors"),
  name: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]*$/, "name must start with a letter or digit and use letters, digits, space, '.', '_' or '-'")
    .optional(),
});
export type CreateGuest = z.infer<typeof CreateGuest>;

/** The longest modelled round trip between a host's first region and the witness's (what a heartbeat crosses). */
export function witnessRttMs(body: CreateGuest): number {
  const regions = body.regions ?? { primary: DEFAULT_PRIMARY_REGION, secondary: DEFAULT_SECONDARY_REGION };
  const witness = regions.witness ?? regions.primary;
  return Math.max(linkSpec(body.latency, regions.primary, witness)?.rttMs ?? 0, linkSpec(body.latency, regions.secondary, witness)?.rttMs ?? 0);
}

/** The heartbeat asked for, or the default stretched to cover 3 round trips to the witness. */
export function heartbeatFor(body: CreateGuest): { intervalMs: number; timeoutMs: number } {
  return body.heartbeat ?? { ...DEFAULT_HEARTBEAT, timeoutMs: Math.max(DEFAULT_HEARTBEAT.timeoutMs, Math.ceil(3 * witnessRttMs(body))) };
}

/** What no single field can say: options that belong to another mode, a heartbeat shorter than the link it crosses. */
export function checkCreate(body: CreateGuest): { field: string; message: string } | null {
  if (body.kemari && body.mode !== "kemari") return { field: "kemari", message: `kemari options apply to mode kemari only, not ${body.mode}` };
  if (body.mode === "none" || !body.heartbeat) return null;
  const rtt = witnessRttMs(body);
  const timeoutMs = body.heartbeat.timeoutMs;
  if (timeoutMs < 3 * rtt) {
    return { field: "heartbeat.timeoutMs", message: `heartbeat.timeoutMs (${timeoutMs}) must be at least 3 × the modelled round trip between a host and the witness (${rtt} ms): at least ${Math.ceil(3 * rtt)}` };
  }
  return null;
}

export const Step = z.strictObject({
  instructions: z.number().int().min(1).max(LIMITS.stepInstructions).default(1),
});

const uint = (max: number) => z.coerce.number().int().min(0).max(max);

export const FromQuery = z.strictObject({ from: uint(Number.MAX_SAFE_INTEGER).default(0) });
export const MemoryQuery = z.strictObject({
  addr: uint(0xffffffff),
  len: z.coerce.number().int().min(1).max(LIMITS.memoryReadBytes),
});
export const DiskQuery = z.strictObject({
  sector: uint(MAX_DISK_SECTORS),
  count: z.coerce.number().int().min(1).max(LIMITS.diskReadSectors),
  /** acked (default): what a takeover would resume with; live: the primary's current disk, which a failover may take back. */
  view: z.enum(["acked", "live"]).default("acked"),
});

export const GuestId = z.string().regex(/^g-[0-9a-f]{12}$/);

export const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(PAGE_MAX).default(PAGE_DEFAULT).describe(`guests per page (at most ${PAGE_MAX})`),
  cursor: z
    .string()
    .max(128)
    .refine((c) => decodeCursor(c) !== null, "not a cursor this API gave (use `next` from the page before)")
    .optional()
    .describe("where to go on: the previous page's `next`"),
});

export const FaultRequest = z
  .strictObject({
    target: z.enum(FAULT_TARGETS),
    kind: z.enum(FAULT_KINDS),
    at: z
      .union([z.enum(FAULT_STEPS), z.strictObject({ instruction: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) })])
      .default("now")
      .describe(
        "a crash at a step happens at that step of the next sync; at {instruction: n} the primary crashes when the guest has run n instructions, the secondary once it holds a checkpoint at or past n",
      ),
  })
  .refine((f) => f.kind === "crash" || f.at === "now", { message: "only a crash can wait for a protocol step or an instruction", path: ["at"] });
