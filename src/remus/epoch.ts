/**
 * Remus's speculation buffer: the outputs (console, packets) the guest made
 * in the current epoch, which the outside world must not see until the
 * epoch's checkpoint is acknowledged. They travel inside every checkpoint, so
 * a secondary that takes over can release them. (The epoch's disk writes are
 * replicated state like memory: src/protocol/replicated-disk.ts.)
 */
import type { Output } from "../devices/backend.ts";

export class Epoch {
  outputs: Output[] = [];

  get empty(): boolean {
    return this.outputs.length === 0;
  }

  /** Hold outputs until the epoch commits. */
  hold(outputs: Output[]): void {
    for (const o of outputs) this.outputs.push(o);
  }
}
