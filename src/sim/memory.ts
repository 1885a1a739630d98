/**
 * How much memory each party holds at its peak while a full checkpoint of a
 * large guest goes from the primary to a new secondary (the platform gives
 * each isolate 128 MB). Locally every object shares one isolate, so each
 * party is measured on its own here, with the same code (Replicator,
 * Replica), sampling the process's live heap and ArrayBuffer bytes (after a
 * collection) at every frame sent or received. The secondary's figure also
 * counts the sending side's frame in flight and delta history, so it is high. SQLite is off the heap, so the secondary's store writes
 * nowhere in this measurement.
 *
 *   npm run sim -- --memory [--pages N]   (node --expose-gc: scripts/sim.mjs)
 */
import { Machine } from "../guest/machine.ts";
import { Replica, type ReplicaStore } from "../kemari/replica.ts";
import { Replicator, type SyncReply } from "../kemari/replicator.ts";

export interface MemoryFigures {
  pages: number;
  guestMiB: number;
  frames: number;
  /** Peak bytes above the party's baseline (before the guest existed), MiB. */
  primaryPeakMiB: number;
  secondaryPeakMiB: number;
  /** A pipelined checkpoint of every page but a few, the guest rewriting them all while it crosses: the primary's peak, MiB. */
  pipelinedPeakMiB: number;
  /** Of which pages kept for it (copy-on-write), MiB. */
  keptPeakMiB: number;
}

const MiB = 1 << 20;

/** Live bytes: garbage is collected first (the platform's limit is on what an isolate keeps alive; V8 collects before it gives up). */
function used(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** A store that keeps nothing in RAM, as SQLite keeps nothing on the heap. */
const offHeap: ReplicaStore = { commit: () => undefined, load: () => null };

function machine(pages: number): Machine {
  const m = new Machine(pages);
  // Every page non-zero and different (nothing is skipped as all-zero).
  const words = new Uint32Array(m.memory.bytes.buffer);
  for (let i = 0; i < words.length; i++) words[i] = (i * 2654435761) >>> 0;
  return m;
}

export async function measureMemory(pages = 16384): Promise<MemoryFigures> {
  const diskSectors = 2048;
  // The primary: encode and send a full checkpoint; the link only samples and drops each frame.
  gc();
  let base = used();
  let peak = 0;
  let frames = 0;
  {
    const m = machine(pages);
    const rep = new Replicator(1, {
      send: async (): Promise<SyncReply> => {
        peak = Math.max(peak, used() - base);
        frames++;
        return { ok: true, seq: 1, committed: true };
      },
    });
    await rep.sync(m, { diskSectors });
  }
  const primaryPeak = peak;
  // The secondary: frames arrive one at a time (each is, in its isolate, only the one in flight),
  // straight from a primary whose own guest memory is taken out of the figure.
  const source = machine(pages);
  gc();
  base = used();
  peak = 0;
  {
    const replica = new Replica(offHeap, 1);
    const rep = new Replicator(1, {
      send: async (b) => {
        const r = replica.receive(b);
        peak = Math.max(peak, used() - base);
        if (!r.ok) throw new Error(`the secondary refused: ${r.reason}`);
        return r;
      },
    });
    await rep.sync(source, { diskSectors });
    peak = Math.max(peak, used() - base);
    // A second full checkpoint to the same secondary (after a lost commit reply): it must not hold two images.
    gc();
    await rep.sync(source, { diskSectors, full: true });
    peak = Math.max(peak, used() - base);
  }
  const pipelined = await measurePipelined(pages, diskSectors);
  return { pages, guestMiB: (pages * 4096) / MiB, frames, primaryPeakMiB: primaryPeak / MiB, secondaryPeakMiB: peak / MiB, ...pipelined };
}

/**
 * The primary's worst pipelined moment: a checkpoint of nearly every page in
 * flight while the guest stores to every one of them again, a frame's time
 * between rounds of stores — as the interpreter would, braking (copy-on-write's
 * limit) until the checkpoint lets go. Before copy-on-write the capture alone
 * was a copy of everything it carried, beside the guest.
 */
async function measurePipelined(pages: number, diskSectors: number): Promise<{ pipelinedPeakMiB: number; keptPeakMiB: number }> {
  gc();
  const base = used();
  let peak = 0;
  let kept = 0;
  const m = machine(pages);
  let storing = false;
  const rep = new Replicator(1, {
    send: async (): Promise<SyncReply> => {
      if (storing) storeRound();
      return { ok: true, seq: rep.seq + 1, committed: true };
    },
  });
  await rep.sync(m, { diskSectors });
  const words = new Uint32Array(m.memory.bytes.buffer);
  for (let p = 0; p < pages - 16; p++) m.memory.writeU32(p * 4096, p ^ 0x5a5a);
  let next = 0;
  const storeRound = () => {
    // The guest runs between frames: it stores to pages until memory brakes (or it has stored to all).
    while (next < pages - 16 && !m.memory.braking) {
      m.memory.touch(next * 4096, 4);
      words[next * 1024] = next++;
    }
    kept = Math.max(kept, m.memory.keptBytes);
    peak = Math.max(peak, used() - base);
  };
  storing = true;
  await rep.send(rep.capture(m, { diskSectors }), {});
  storeRound();
  return { pipelinedPeakMiB: peak / MiB, keptPeakMiB: kept / MiB };
}
