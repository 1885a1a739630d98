/**
 * The primary's protection loop on its own (src/kemari/protection.ts): how
 * each way a link or the witness can fail is handled, with fakes for both.
 */
import { describe, expect, it } from "vitest";
import type { Output } from "../src/devices/backend.ts";
import type { HostPlace } from "../src/host/status.ts";
import { Fenced, Protection, type RecordReply, type SecondaryPort, type SecondaryReply, type Witness } from "../src/kemari/protection.ts";
import type { Replicator, SyncReply } from "../src/kemari/replicator.ts";

const OK: SyncReply = { ok: true, seq: 1, committed: true };

/** A world of hosts and a witness, scripted per test. */
function world(opts: { generation?: number } = {}) {
  const log: string[] = [];
  let primary = true;
  let hostCount = 1;
  /** What each secondary answers to a disk write, by name: a reply, or "throw" for a dead link. */
  const answers = new Map<string, (SyncReply | "throw")[]>();
  const witness: Witness & { refuse: boolean; unreachable: number; records: Output[][] } = {
    refuse: false,
    unreachable: 0,
    records: [] as Output[][],
    async replaceSecondary(generation: number, failed: HostPlace | null): Promise<SecondaryReply> {
      if (this.unreachable > 0) {
        this.unreachable--;
        log.push("witness unreachable");
        throw new Error("link down");
      }
      log.push(`replaceSecondary(gen ${generation}, failed ${failed?.name ?? "none"})`);
      if (this.refuse) return { ok: false, reason: `generation ${generation} is superseded` };
      return { ok: true, secondary: { name: `host-${hostCount++}`, region: "enam" } };
    },
    async secondaryReady(generation: number, s: HostPlace): Promise<void> {
      log.push(`ready(${s.name})`);
    },
    async record(generation: number, outputs: Output[]): Promise<RecordReply> {
      if (this.refuse) return { ok: false, reason: "superseded" };
      this.records.push(outputs);
      return { ok: true };
    },
  };
  const host = {
    generation: opts.generation ?? 0,
    fenced: null as string | null,
    isPrimary: () => primary,
    fence(reason: string) {
      this.fenced = reason;
      primary = false;
    },
    connect(place: HostPlace): SecondaryPort {
      const next = async (): Promise<SyncReply> => {
        const a = answers.get(place.name)?.shift() ?? OK;
        if (a === "throw") throw new Error("link down");
        return a;
      };
      return { send: next, diskWrite: async () => next() };
    },
    /** Stands in for a checkpoint: logs it, and a full one makes the secondary current. */
    async sync(r: Replicator) {
      log.push(r.needsFull ? "full checkpoint" : "checkpoint");
      r.seq++;
      r.needsFull = false;
    },
  };
  const sleeps: number[] = [];
  const protection = new Protection(host, witness, { attempts: 3, backoffMs: 20, witnessRetryMs: 100, sleep: async (ms) => void sleeps.push(ms) });
  return { protection, witness, host, log, answers, sleeps };
}

/** Start protected by host-0, with the log cleared of how it got there. */
async function connected(w: ReturnType<typeof world>): Promise<void> {
  w.protection.use({ name: "host-0", region: "enam" });
  await w.protection.replicate(async () => {});
  w.log.length = 0;
}

describe("the protection loop", () => {
  it("gets a secondary from the witness and sends it a full checkpoint before any other work", async () => {
    const w = world();
    await w.protection.replicate(async (r) => w.host.sync(r));
    expect(w.log).toEqual(["replaceSecondary(gen 0, failed none)", "full checkpoint", "ready(host-1)", "checkpoint"]);
    expect(w.protection.secondary).toEqual({ name: "host-1", region: "enam" });
  });

  it("retries a failing link, then replaces the secondary (naming the failed one) with a full checkpoint", async () => {
    const w = world();
    await connected(w);
    w.answers.set("host-0", ["throw", "throw", "throw"]);
    await w.protection.mirror(5, new Uint8Array(512));
    expect(w.sleeps).toEqual([20, 20]);
    expect(w.log).toEqual(["replaceSecondary(gen 0, failed host-0)", "full checkpoint", "ready(host-1)"]);
  });

  it("replaces a secondary at once when it says it was superseded", async () => {
    const w = world();
    await connected(w);
    w.answers.set("host-0", [{ ok: false, code: "superseded", reason: "it is primary now" }]);
    await w.protection.mirror(1, new Uint8Array(512));
    expect(w.sleeps).toEqual([]);
    expect(w.log[0]).toBe("replaceSecondary(gen 0, failed host-0)");
  });

  it("starts again with a full checkpoint to the same secondary when it answers out of order", async () => {
    const w = world();
    await connected(w);
    w.answers.set("host-0", [{ ok: false, code: "out-of-order", reason: "restarted mid-checkpoint" }]);
    await w.protection.mirror(1, new Uint8Array(512));
    // The witness already heard that host-0 holds a whole copy: it is not told again.
    expect(w.log).toEqual(["full checkpoint"]);
    expect(w.protection.secondary!.name).toBe("host-0");
  });

  it("tells the witness again when its secondaryReady is lost, and keeps the secondary", async () => {
    const w = world();
    let lost = 2;
    const ready = w.witness.secondaryReady.bind(w.witness);
    w.witness.secondaryReady = async (g, s) => {
      if (lost-- > 0) throw new Error("reply lost");
      return ready(g, s);
    };
    await w.protection.replicate(async () => {});
    expect(w.log).toEqual(["replaceSecondary(gen 0, failed none)", "full checkpoint", "ready(host-1)"]);
    expect(w.sleeps).toEqual([100, 100]);
    expect(w.protection.secondary!.name).toBe("host-1");
  });

  it("keeps asking a witness it cannot reach, and goes on when it answers", async () => {
    const w = world();
    w.witness.unreachable = 3;
    await w.protection.replicate(async () => {});
    expect(w.sleeps).toEqual([100, 100, 100]);
    expect(w.log.filter((l) => l === "witness unreachable")).toHaveLength(3);
    expect(w.protection.secondary!.name).toBe("host-1");
  });

  it("is fenced when the witness refuses its generation, and releases nothing from then on", async () => {
    const w = world({ generation: 3 });
    w.protection.use({ name: "host-0", region: "enam" });
    await w.protection.replicate(async () => {});
    await w.protection.release([{ device: "console", index: 0, data: new Uint8Array([104]) }]);
    expect(w.witness.records).toHaveLength(1);
    w.witness.refuse = true;
    await expect(w.protection.release([{ device: "console", index: 1, data: new Uint8Array([105]) }])).rejects.toThrow(Fenced);
    expect(w.host.fenced).toMatch(/superseded/);
    w.witness.refuse = false;
    await expect(w.protection.release([{ device: "console", index: 2, data: new Uint8Array([106]) }])).rejects.toThrow(Fenced);
    await expect(w.protection.replicate(async () => {})).rejects.toThrow(Fenced);
    expect(w.witness.records).toHaveLength(1);
  });

  it("is fenced when it asks for a new secondary under a superseded generation", async () => {
    const w = world({ generation: 0 });
    w.witness.refuse = true;
    await expect(w.protection.replicate(async () => {})).rejects.toThrow(Fenced);
    expect(w.host.fenced).toMatch(/superseded/);
  });
});
