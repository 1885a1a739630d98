/**
 * A checkpoint's frames go out in a window (src/kemari/replicator.ts): several
 * may be unacknowledged at once across a modelled link, each acknowledged in
 * order, and a frame refused in the middle fails the checkpoint (the
 * secondary, which applies parts only in order, never commits it).
 */
import { describe, expect, it } from "vitest";
import { Machine } from "../src/guest/machine.ts";
import { PAGE_SIZE } from "../src/guest/memory.ts";
import { MemoryReplicaStore, Replica } from "../src/kemari/replica.ts";
import { DEFAULT_MAX_FRAME_BYTES, Replicator, SyncRefused, type SyncReply } from "../src/kemari/replicator.ts";
import { captureMachine } from "../src/kemari/state.ts";

const GEN = 3;
const SYNC = { diskSectors: 64 } as const;

/** A link whose replies wait until released: how many frames are out at once, and in what order they are answered. */
function slowLink(replica: () => Replica) {
  const waiting: (() => void)[] = [];
  const state = { sent: 0, maxOut: 0, out: 0, refuseIndex: -1, paced: 0, outAtSecond: -1 };
  const link = {
    send(bytes: Uint8Array): Promise<SyncReply> {
      const index = state.sent++;
      if (index === 1) state.outAtSecond = state.out;
      state.out++;
      state.maxOut = Math.max(state.maxOut, state.out);
      return new Promise<SyncReply>((resolve) => {
        waiting.push(() => {
          state.out--;
          resolve(index === state.refuseIndex ? { ok: false, code: "unreachable", reason: "dropped" } : replica().receive(bytes));
        });
      });
    },
    async pace() {
      state.paced++;
    },
  };
  /** Answer the oldest frame whenever the sender waits (a FIFO link), until `p` settles. */
  const drain = async (p: Promise<unknown>) => {
    for (;;) {
      const done = await Promise.race([p.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), 0))]);
      if (done) return;
      waiting.shift()?.();
    }
  };
  return { link, state, drain };
}

function dirty(m: Machine, pages: number, seed: number): void {
  for (let p = 0; p < pages; p++) {
    const b = new Uint8Array(PAGE_SIZE);
    for (let i = 0; i < b.length; i += 4) b[i] = (p * 31 + i + seed) & 255;
    m.memory.write(p * PAGE_SIZE, b);
  }
}

describe("checkpoint frames in a window", () => {
  for (const frames of [1, 4]) {
    it(`a window of ${frames} frame(s): at most that many out at once, and the secondary ends up with the whole checkpoint`, async () => {
      const store = new MemoryReplicaStore();
      const replica = new Replica(store, GEN);
      const m = new Machine(512);
      const { link, state, drain } = slowLink(() => replica);
      const rep = new Replicator(GEN, link, { windowBytes: frames * DEFAULT_MAX_FRAME_BYTES });
      dirty(m, 400, 1); // ~1.6 MiB raw: seven frames or so
      const syncing = rep.sync(m, { ...SYNC, full: true });
      await drain(syncing);
      const stats = await syncing;
      expect(stats.frames).toBeGreaterThanOrEqual(5);
      expect(state.maxOut).toBe(frames);
      expect(state.paced).toBe(stats.frames - 1);
      // The first frame went alone: acknowledged before the second left (it starts the checkpoint over at the secondary).
      expect(state.outAtSecond).toBe(0);
      expect(replica.seq).toBe(rep.seq);
      expect(Buffer.from(replica.memory!).equals(Buffer.from(m.memory.bytes))).toBe(true);
      expect(replica.meta!.machine).toEqual(captureMachine(m));
    });
  }

  it("a frame refused inside the window fails the checkpoint, and the secondary keeps the one before", async () => {
    const store = new MemoryReplicaStore();
    const replica = new Replica(store, GEN);
    const m = new Machine(512);
    const { link, state, drain } = slowLink(() => replica);
    const rep = new Replicator(GEN, link, { windowBytes: 4 * DEFAULT_MAX_FRAME_BYTES });
    dirty(m, 8, 1);
    const first = rep.sync(m, { ...SYNC, full: true });
    await drain(first);
    await first;
    const held = { seq: replica.seq, memory: replica.memory!.slice() };
    dirty(m, 400, 2);
    state.refuseIndex = state.sent + 1; // the second frame of the next checkpoint
    const second = rep.sync(m, SYNC);
    await drain(second);
    await expect(second).rejects.toBeInstanceOf(SyncRefused);
    expect(replica.seq).toBe(held.seq);
    expect(Buffer.from(replica.memory!).equals(Buffer.from(held.memory))).toBe(true);
    // The next goes whole: the secondary's copy is as it was, and so is the replicator's view of it.
    dirty(m, 2, 3);
    const third = rep.sync(m, SYNC);
    await drain(third);
    await third;
    expect(replica.seq).toBe(rep.seq);
    expect(Buffer.from(replica.memory!).equals(Buffer.from(m.memory.bytes))).toBe(true);
  });
});
