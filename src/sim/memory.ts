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
  return { pages, guestMiB: (pages * 4096) / MiB, frames, primaryPeakMiB: primaryPeak / MiB, secondaryPeakMiB: peak / MiB };
}
