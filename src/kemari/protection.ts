/**
 * The primary's protection loop, as a plain state machine: keep a secondary,
 * get each piece of work (a checkpoint, a mirrored disk write) acknowledged
 * by it, and release outputs through the witness — or stop for good when the
 * witness says this host is no longer the primary (fencing).
 *
 * How the link fails decides what happens next:
 * - the secondary refuses as superseded / not a secondary, or the link fails
 *   `attempts` times in a row → ask the witness for a fresh secondary, which
 *   gets a full checkpoint before anything else;
 * - the secondary answers out of order (it restarted mid-checkpoint) → start
 *   again with a full checkpoint to the same secondary;
 * - the witness cannot be reached → keep asking (the guest waits: nothing is
 *   released unprotected);
 * - the witness refuses this generation → fenced.
 *
 * The Durable Object supplies the transport (and its partitions), the
 * witness, and what "fenced" means for it.
 */
import type { Output } from "../devices/backend.ts";
import type { HostPlace } from "../host/status.ts";
import { InvariantError, Replicator, SyncRefused, type SecondaryLink, type SyncReply } from "./replicator.ts";

export type SecondaryReply = { ok: true; secondary: HostPlace } | { ok: false; reason: string };
export type RecordReply = { ok: true } | { ok: false; reason: string };

/** The guest's switch, as the primary sees it. */
export interface Witness {
  /** `failedHeldCopy`: the failed secondary acknowledged a checkpoint (it may hold the newest copy). */
  replaceSecondary(generation: number, failed: HostPlace | null, failedHeldCopy?: boolean): Promise<SecondaryReply>;
  secondaryReady(generation: number, secondary: HostPlace): Promise<void>;
  record(generation: number, outputs: Output[]): Promise<RecordReply>;
}

/** A secondary, as the primary reaches it. */
export interface SecondaryPort extends SecondaryLink {
  diskWrite(generation: number, sector: number, data: Uint8Array): Promise<SyncReply>;
}

export interface ProtectionHost {
  readonly generation: number;
  /** Still the primary (as far as this host knows)? */
  isPrimary(): boolean;
  /** The witness moved the guest away: stop for good. */
  fence(reason: string): void;
  connect(place: HostPlace): SecondaryPort;
  /** Synchronise the secondary (a full checkpoint when `r.needsFull`). */
  sync(r: Replicator): Promise<void>;
  /** The witness knows a new secondary holds a whole copy: any older copy this host kept may go. */
  reprotected?(): void;
}

/** The witness has moved the guest elsewhere: this host must stop and release nothing. */
export class Fenced extends Error {
  constructor(reason: string) {
    super(`fenced: ${reason}`);
    this.name = "Fenced";
  }
}

export interface ProtectionOptions {
  /** Failed sends to a secondary before asking the witness for another. */
  attempts: number;
  backoffMs: number;
  /** How often a primary cut off from the witness asks again. */
  witnessRetryMs: number;
  sleep: (ms: number) => Promise<void>;
  /** Bytes of a checkpoint's frames that may be unacknowledged at once (see windowBytesFor). */
  windowBytes?: number;
}

export const DEFAULT_PROTECTION: ProtectionOptions = {
  attempts: 3,
  backoffMs: 20,
  witnessRetryMs: 100,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class Protection {
  replicator: Replicator | null = null;
  secondary: HostPlace | null = null;
  private port: SecondaryPort | null = null;
  private failed: HostPlace | null = null;
  /** The failed secondary acknowledged at least one checkpoint: the witness must remember it as a takeover candidate. */
  private failedHeldCopy = false;
  /** The witness has heard that the current secondary holds a whole copy. */
  private announced = false;

  constructor(
    private readonly host: ProtectionHost,
    private readonly witness: Witness,
    private readonly options: ProtectionOptions = DEFAULT_PROTECTION,
  ) {}

  /** Start with a secondary the witness already assigned (at creation). */
  use(secondary: HostPlace): void {
    this.secondary = secondary;
    this.port = this.host.connect(secondary);
    this.replicator = new Replicator(this.host.generation, this.port, { windowBytes: this.options.windowBytes });
    this.announced = false;
  }

  /**
   * Resume an idle-saved primary after its host restarted (src/protocol/idle-save.ts):
   * the same secondary, which holds checkpoint `seq` — this guest's memory and
   * disk exactly (the save waited until nothing was left to send), and which the
   * witness already knows. No delta bases survived the restart: the next
   * checkpoint sends whole pages.
   */
  resume(secondary: HostPlace, seq: number): void {
    this.use(secondary);
    this.replicator!.seq = seq;
    this.replicator!.needsFull = false;
    this.announced = true;
  }

  /**
   * Tell the witness the secondary holds a whole copy (the guest is protected
   * again). Until it has heard, keep asking: a lost call must not leave the
   * witness thinking the guest unprotected — nor cost us the secondary.
   */
  private async announce(): Promise<void> {
    for (;;) {
      this.check();
      try {
        await this.witness.secondaryReady(this.host.generation, this.secondary!);
        break;
      } catch {
        await this.options.sleep(this.options.witnessRetryMs);
      }
    }
    this.announced = true;
    this.host.reprotected?.();
  }

  /**
   * Run `op` against the secondary, through every way the link can fail.
   * Returns once `op` succeeded; throws Fenced when this host is superseded.
   */
  async replicate(op: (r: Replicator) => Promise<void>): Promise<void> {
    let failures = 0;
    for (;;) {
      this.check();
      try {
        if (!this.replicator) await this.attach();
        const r = this.replicator!;
        if (r.needsFull) await this.host.sync(r);
        if (!this.announced) await this.announce();
        await op(r);
        return;
      } catch (e) {
        // Fenced: stop. A broken invariant is a bug: retrying it as a failed link would hide it.
        if (e instanceof Fenced || e instanceof InvariantError) throw e;
        failures++;
        const refused = e instanceof SyncRefused ? e.code : null;
        if (refused === "out-of-order" && this.replicator) this.replicator.needsFull = true;
        if (refused === "superseded" || refused === "not-secondary" || failures >= this.options.attempts) {
          if (this.secondary) {
            this.failed = this.secondary;
            this.failedHeldCopy = (this.replicator?.seq ?? 0) > 0;
          }
          this.replicator = null;
          this.secondary = null;
          this.port = null;
          failures = 0;
        } else {
          await this.options.sleep(this.options.backoffMs);
        }
      }
    }
  }

  /** The replicator, if a checkpoint may go to it right now without the loop above (a pipeline's): a secondary that holds a whole copy the witness knows of. */
  get ready(): Replicator | null {
    const r = this.replicator;
    return r && !r.needsFull && this.announced && this.host.isPrimary() ? r : null;
  }

  /** A disk write, on the secondary's replica before it completes here. */
  mirror(sector: number, data: Uint8Array): Promise<void> {
    return this.replicate(async () => {
      const reply = await this.port!.diskWrite(this.host.generation, sector, data);
      if (!reply.ok) throw new SyncRefused(reply.code, reply.reason);
    });
  }

  /** Hand outputs to the outside world; the witness refuses a superseded generation. */
  async release(outputs: Output[]): Promise<void> {
    for (;;) {
      this.check();
      let reply: RecordReply;
      try {
        reply = await this.witness.record(this.host.generation, outputs);
      } catch {
        await this.options.sleep(this.options.witnessRetryMs);
        continue;
      }
      if (!reply.ok) throw this.fenced(reply.reason);
      return;
    }
  }

  /** Ask the witness for a (new) secondary; keep asking while it cannot be reached. */
  private async attach(): Promise<void> {
    for (;;) {
      this.check();
      let reply: SecondaryReply;
      try {
        reply = await this.witness.replaceSecondary(this.host.generation, this.failed, this.failedHeldCopy);
      } catch {
        await this.options.sleep(this.options.witnessRetryMs);
        continue;
      }
      if (!reply.ok) throw this.fenced(reply.reason);
      this.failed = null;
      this.failedHeldCopy = false;
      this.use(reply.secondary);
      return;
    }
  }

  private check(): void {
    if (!this.host.isPrimary()) throw new Fenced("this host is not the primary");
  }

  private fenced(reason: string): Fenced {
    this.replicator = null;
    this.host.fence(reason);
    return new Fenced(reason);
  }
}
