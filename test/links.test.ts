/**
 * The link model and the tap's options through the API: validation that
 * names the field, status that echoes them, and delays that hold in workerd.
 */
import { describe, expect, it } from "vitest";
import hello from "../guests/hello.s?raw";
import { call, createGuest, json, resume, waitFor } from "./helpers/api.ts";
import { DEFAULT_KEMARI, withDefaults, type GuestConfig } from "../src/host/guest-config.ts";

async function refused(extra: Record<string, unknown>): Promise<{ field?: string; detail: string }> {
  return json(await call("POST", "/api/guests", { body: { image: { asm: hello }, ...extra } }), 400);
}

describe("create options: latency, regions.witness, kemari", () => {
  it("refuses kemari options in another mode, naming the field", async () => {
    const p = await refused({ mode: "remus", kemari: { pipeline: false } });
    expect(p.field).toBe("kemari");
    expect(p.detail).toMatch(/mode kemari only/);
  });

  it("refuses a round trip out of range and an unknown latency, naming the field", async () => {
    expect((await refused({ latency: { rttMs: 2001 } })).field).toMatch(/^latency/);
    expect((await refused({ latency: { rttMs: 10, mbps: 0 } })).field).toMatch(/^latency/);
    expect((await refused({ latency: "far" })).field).toMatch(/^latency/);
    expect((await refused({ kemari: { syncOn: "never" } })).field).toMatch(/^kemari/);
  });

  it("refuses a heartbeat timeout below 3 × the modelled round trip to the witness", async () => {
    const p = await refused({ latency: { rttMs: 100 }, heartbeat: { intervalMs: 100, timeoutMs: 250 } });
    expect(p.field).toBe("heartbeat.timeoutMs");
    expect(p.detail).toMatch(/at least 300/);
  });

  it("stretches the default heartbeat timeout to cover 3 round trips", async () => {
    const g = await createGuest({ asm: hello }, { latency: { rttMs: 1000 }, paused: true });
    expect(g.heartbeat).toEqual({ intervalMs: 200, timeoutMs: 3000 });
  });

  it("echoes the options and shows each link with its round trip", async () => {
    const g = await createGuest({ asm: hello }, { latency: "by-region", regions: { primary: "weur", secondary: "enam", witness: "apac" }, paused: true });
    expect(g.kemari).toEqual(DEFAULT_KEMARI);
    expect(g.latency).toBe("by-region");
    expect(g.links).toEqual([
      { from: "primary", fromRegion: "weur", to: "secondary", toRegion: "enam", rttMs: 80, mbps: 1000 },
      { from: "primary", fromRegion: "weur", to: "witness", toRegion: "apac", rttMs: 165, mbps: 1000 },
      { from: "secondary", fromRegion: "enam", to: "witness", toRegion: "apac", rttMs: 235, mbps: 1000 },
    ]);
    const r = await createGuest({ asm: hello }, { mode: "remus", paused: true });
    expect(r.kemari).toBeNull();
    expect(r.latency).toBe("none");
    expect(r.links.every((l) => l.rttMs === 0)).toBe(true);
  });

  it("reads guests stored before these options with the defaults", () => {
    const old = { id: "g-000000000000", mode: "kemari", regions: { primary: "weur", secondary: "enam" } } as unknown as GuestConfig;
    expect(withDefaults(old)).toMatchObject({ latency: "none", kemari: DEFAULT_KEMARI });
    expect(withDefaults({ ...old, kemari: { pipeline: false } as GuestConfig["kemari"] }).kemari).toEqual({ syncOn: "outputs", pipeline: false });
  });
});

describe("modelled delays in workerd", () => {
  it.each([
    ["stop-and-wait", false],
    ["pipelined", true],
  ])("a kemari guest's first output waits for its checkpoint's round trip (%s)", async (_name, pipeline) => {
    const g = await createGuest({ asm: hello }, { latency: { rttMs: 150 }, kemari: { syncOn: "outputs", pipeline }, paused: true });
    const t0 = Date.now();
    await resume(g.id);
    const done = await waitFor(g.id, (s) => s.state === "halted");
    // One round trip to the secondary for the checkpoint (the witness shares the primary's region).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(done.sync!.lastFlightMs).toBeGreaterThanOrEqual(150);
    expect(done.sync!.lastFlightMs).toBeLessThan(150 * 1.5);
    if (pipeline) expect(done.sync!.lastPauseMs).toBeLessThan(done.sync!.lastFlightMs);
  });
});

describe("checkpoint frames sized to the link", () => {
  it("260 KiB frames (the thread stays free between frames; 64 dirty pages still go in one); a window of one frame with no modelled link, the bandwidth-delay product across one, up to 8 MiB", async () => {
    const { windowBytesFor, DEFAULT_MAX_FRAME_BYTES, MAX_WINDOW_BYTES } = await import("../src/kemari/replicator.ts");
    const { frameBytes, Space, Enc } = await import("../src/kemari/checkpoint.ts");
    const { DeviceKind } = await import("../src/guest/abi.ts");
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(260 << 10);
    expect(windowBytesFor(null)).toBe(DEFAULT_MAX_FRAME_BYTES);
    expect(windowBytesFor({ rttMs: 0, mbps: 100 })).toBe(DEFAULT_MAX_FRAME_BYTES);
    // A commit frame with 64 raw pages, the machine, a few bindings and outputs fits one frame.
    const page = new Uint8Array(4096);
    const commit = {
      seq: 1, generation: 0, part: 0, full: false, memoryPages: 16384, diskSectors: 2048,
      machine: { regs: new Int32Array(32), pc: 0, instret: 0, pending: 0, state: "running" as const, exitCode: null, bindings: Object.values(DeviceKind).map((kind, i) => ({ port: i + 1, kind, ring: (i + 1) << 12 })) },
      entries: [
        ...Array.from({ length: 64 }, (_, i) => ({ space: Space.PAGE, index: i, enc: Enc.RAW, data: page })),
        ...Array.from({ length: 8 }, (_, i) => ({ space: Space.OUTPUT, index: i, enc: Enc.RAW, data: new Uint8Array(64) })),
      ],
    };
    expect(frameBytes(commit)).toBeLessThanOrEqual(DEFAULT_MAX_FRAME_BYTES);
    expect(frameBytes({ ...commit, entries: [...commit.entries, commit.entries[0]] })).toBeGreaterThan(DEFAULT_MAX_FRAME_BYTES - 4096);
    // 80 ms at 1000 Mbps: 10 MB in flight, capped at 8 MiB.
    expect(windowBytesFor({ rttMs: 80, mbps: 1000 })).toBe(MAX_WINDOW_BYTES);
    // 20 ms at 1000 Mbps: 2.5 MB.
    expect(windowBytesFor({ rttMs: 20, mbps: 1000 })).toBe(2_500_000);
    // Slow links never go below one frame; unlimited bandwidth takes the largest window.
    expect(windowBytesFor({ rttMs: 150, mbps: 1 })).toBe(DEFAULT_MAX_FRAME_BYTES);
    expect(windowBytesFor({ rttMs: 80, mbps: null })).toBe(MAX_WINDOW_BYTES);
  });
});
