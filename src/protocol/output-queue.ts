/**
 * Outputs on their way to the switch. The guest never waits for them: a
 * backend hands its outputs here and completes its requests at once, and
 * one sender carries them to the witness in order, in batches — still
 * fenced by generation (a refusal stops this primary for good) and
 * deduplicated there by identity (device, ring index).
 *
 * An output leaves only once a checkpoint that holds its request was
 * acknowledged (Kemari) or its epoch was (Remus); that is the caller's
 * promise. Until the witness has it, it is carried in every checkpoint (see
 * `unconfirmed`): the secondary's copy already holds the response, so a
 * takeover would never make the output again — it releases it instead.
 */
import type { Output } from "../devices/backend.ts";

/** At most this many outputs, or bytes, in one call to the witness. */
const MAX_BATCH_OUTPUTS = 256;
const MAX_BATCH_BYTES = 1 << 20;

export class OutputQueue {
  /** Handed over, not yet confirmed by the witness, in order. */
  private readonly queue: Output[] = [];
  private sending: Promise<void> | null = null;
  private stopped = false;
  private readonly drainedWaiters: (() => void)[] = [];

  constructor(
    /** Carry one batch to the witness; throws Fenced when it refuses this generation. */
    private readonly send: (outputs: Output[]) => Promise<void>,
    /** The sender stopped on an error it cannot handle (Fenced included): the primary's to act on. */
    private readonly failed: (e: unknown) => void,
  ) {}

  /** Outputs whose checkpoint (or epoch) is acknowledged: they go now, behind the earlier ones. */
  push(outputs: readonly Output[]): void {
    if (outputs.length === 0) return;
    for (const o of outputs) this.queue.push(o);
    this.kick();
  }

  /** How many outputs have not reached the witness yet. */
  get inFlight(): number {
    return this.queue.length;
  }

  /** The outputs a checkpoint must carry so a takeover can release them. */
  unconfirmed(): Output[] {
    return this.queue.slice();
  }

  /** Resolves once every output handed over has reached the witness. */
  drained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainedWaiters.push(resolve));
  }

  private kick(): void {
    if (this.sending || this.stopped) return;
    this.sending = this.run().finally(() => {
      this.sending = null;
    });
  }

  private async run(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = nextBatch(this.queue);
        await this.send(batch);
        this.queue.splice(0, batch.length);
      }
      for (const w of this.drainedWaiters.splice(0)) w();
    } catch (e) {
      // Fenced (the witness refused this generation) or worse: nothing more leaves from here.
      this.stopped = true;
      this.failed(e);
    }
  }
}

function nextBatch(queue: readonly Output[]): Output[] {
  let bytes = 0;
  let n = 0;
  while (n < queue.length && n < MAX_BATCH_OUTPUTS && (n === 0 || bytes + queue[n].data.length <= MAX_BATCH_BYTES)) {
    bytes += queue[n].data.length;
    n++;
  }
  return queue.slice(0, n);
}
