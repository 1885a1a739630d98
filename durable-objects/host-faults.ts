/**
 * Fault injection on a host Durable Object (teaching, and the end-to-end
 * tests): a cut link, and a crash armed for a named protocol step. A crash
 * is `ctx.abort()`: the object's memory is gone, as in a power cut; only its
 * storage survives — all but the save of an idle guest
 * (src/protocol/idle-save.ts), which the crash takes with it: an injected
 * crash models the host lost, and shows the failover (or, in mode none, the
 * loss) a real one causes. The runtime's own eviction leaves the save.
 */
import type { FaultKind, FaultStep, FaultWhen } from "../src/kemari/faults.ts";
import type { StepFaults } from "../src/protocol/ports.ts";
import type { SqlReplicaStore } from "./replica-store.ts";
import type { SqlIdleStore } from "./idle-store.ts";

export class HostFaults implements StepFaults {
  /** A partitioned host neither answers nor reaches the other hosts and the switch. */
  partitioned = false;
  private armed: FaultStep | null = null;
  /** A crash armed for an instruction count (`at: {instruction}`). */
  private atInstruction: number | null = null;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly replica: SqlReplicaStore,
    private readonly idle: SqlIdleStore,
    /** The save was cleared: the host's saver must not think the store still holds it. */
    private readonly idleCleared: () => void = () => {},
  ) {}

  inject(kind: FaultKind, at: FaultWhen): void {
    // Cleared now, in this request's turn: its reply waits until the write is durable, and the crash comes later.
    if (kind === "crash") {
      this.idle.clear();
      this.idleCleared();
    }
    if (kind === "partition") this.partitioned = true;
    else if (kind === "heal") this.partitioned = false;
    else if (typeof at === "object") this.atInstruction = at.instruction;
    else if (at === "now") setTimeout(() => this.ctx.abort("injected crash"), 0);
    else this.armed = at;
  }

  /** The primary: how many instructions may run before an armed crash (Infinity: none armed). */
  instructionsLeft(instret: number): number {
    return this.atInstruction === null ? Infinity : Math.max(0, this.atInstruction - instret);
  }

  /** The primary ran to `instret`: an armed crash at that count happens now. */
  ran(instret: number): void {
    if (this.atInstruction !== null && instret >= this.atInstruction) this.crash(`instruction ${this.atInstruction}`);
  }

  at(step: string): void {
    if (this.armed === step) this.crash(step);
  }

  minFrames(): number {
    return this.armed === "mid-transfer" ? 2 : 1;
  }

  /** The secondary is about to apply a frame. */
  applying(): void {
    if (this.armed === "before-transfer") this.crash("before-transfer");
    this.replica.midway = this.armed === "mid-transfer" ? () => this.crash("mid-transfer") : null;
  }

  /** The secondary acknowledged a checkpoint (of the guest at `instret`): a crash armed for after the ack, or for that count, happens now (after the reply leaves). */
  acknowledged(instret: number): void {
    this.replica.midway = null;
    if (this.atInstruction !== null && instret >= this.atInstruction) {
      this.atInstruction = null;
      setTimeout(() => this.ctx.abort("injected crash at an instruction count"), 0);
    }
    if (this.armed === "after-ack" || this.armed === "after-release") {
      this.armed = null;
      setTimeout(() => this.ctx.abort("injected crash after ack"), 0);
    }
  }

  /** A call over the (possibly cut) network between objects. */
  async net<T>(fn: () => PromiseLike<T>): Promise<T> {
    if (this.partitioned) throw new Error("link down: this host is partitioned");
    const v = await fn();
    if (this.partitioned) throw new Error("link down: this host is partitioned");
    return v;
  }

  private crash(step: string): never {
    this.armed = null;
    this.ctx.abort(`injected crash at ${step}`);
    throw new Error("unreachable after abort");
  }
}
