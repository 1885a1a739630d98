/**
 * A secondary: the last acknowledged checkpoint of the guest, in RAM for a
 * fast takeover and in durable storage so that it survives this host's own
 * restart (src/kemari/replica.ts does the staging and the whole-or-nothing
 * apply). It serves one generation: frames of any other are refused.
 */
import { Replica } from "../kemari/replica.ts";
import type { SyncReply } from "../kemari/replicator.ts";
import { mutations } from "./mutations.ts";
import type { HostStore, StepFaults } from "./ports.ts";

export class Secondary {
  private replica: Replica | null = null;

  constructor(
    private readonly store: HostStore,
    readonly generation: number,
  ) {}

  /** The copy, loaded from storage on first use after a restart. */
  get copy(): Replica {
    this.replica ??= new Replica(this.store.replica, this.generation);
    return this.replica;
  }

  /** One frame of a checkpoint from the primary of our generation. */
  receive(frame: Uint8Array, faults: StepFaults): SyncReply {
    const replica = this.copy;
    faults.applying?.();
    const reply = replica.receive(frame, mutations.acceptOlderGeneration);
    return reply;
  }

  /** Only under the mutation `mirrorDiskAhead`: a write straight onto the copy's disk, ahead of its checkpoint. */
  diskWrite(generation: number, sector: number, data: Uint8Array): SyncReply {
    if (generation !== this.generation) return { ok: false, code: "superseded", reason: `not the secondary of generation ${generation}` };
    if (!this.copy.meta) return { ok: false, code: "out-of-order", reason: "no full checkpoint yet" };
    this.store.replica.commit({ full: false, pages: [], sectors: splitSectors(sector, data), outputs: this.copy.outputs, meta: this.copy.meta });
    return { ok: true, seq: this.copy.seq, committed: true };
  }
}

function splitSectors(sector: number, data: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let i = 0; i * 512 < data.length; i++) out.push([sector + i, data.slice(i * 512, (i + 1) * 512)]);
  return out;
}
