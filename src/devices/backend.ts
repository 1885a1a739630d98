/**
 * The split-driver backend side (Xen's dom0 netback/blkback), host-local.
 *
 * A backend's cursors are private and never replicated: after a failover the
 * new primary attaches fresh backends, which rebuild them from the shared ring
 * (`attach`): every request in [rsp_prod, req_prod) is outstanding and is
 * processed again. Outputs carry their ring index as identity, so the outside
 * world can recognise a repeat.
 */
import type { Binding } from "../guest/machine.ts";
import type { Memory } from "../guest/memory.ts";
import { Ring, type Request } from "./ring.ts";

export type OutputDevice = "console" | "net";

/** Something the outside world sees: a console chunk or a sent packet. */
export interface Output {
  device: OutputDevice;
  /** The request's ring index: the output's identity. */
  index: number;
  data: Uint8Array;
}

/**
 * The virtual disk as a backend sees it. `write` is asynchronous: a protected
 * host's disk may do more than store the sectors locally.
 */
export interface Disk {
  readonly sectors: number;
  read(sector: number, count: number): Uint8Array;
  write(sector: number, data: Uint8Array): Promise<void>;
}

/** What a backend needs from its host. */
export interface DeviceHost {
  readonly memory: Memory;
  readonly disk: Disk;
  /** Raise an event-channel port toward the guest. */
  raise(port: number): void;
  /** Hand outputs to the outside world; resolves once they are recorded. */
  release(outputs: Output[]): Promise<void>;
  /** A packet went into net-rx buffer `index` (what the guest consumed: for the simulator's checker). */
  received?(index: number, packet: Uint8Array): void;
}

export interface BackendStats {
  requests: number;
  bytes: number;
  errors: number;
}

export abstract class Backend {
  readonly ring: Ring;
  /** Private cursor: the next request index this backend has not consumed. */
  reqCons = 0;
  readonly stats: BackendStats = { requests: 0, bytes: 0, errors: 0 };

  constructor(
    protected readonly host: DeviceHost,
    readonly binding: Binding,
  ) {
    this.ring = new Ring(host.memory, binding.ring);
    this.attach();
  }

  get port(): number {
    return this.binding.port;
  }

  /** Rebuild the private cursors from the shared ring. */
  attach(): void {
    this.reqCons = this.ring.rspProd;
  }

  /**
   * The guest notified this backend's port. `upTo`: consume requests only
   * below this ring index — the req_prod a pipelined checkpoint captured, so
   * a request the secondary does not hold yet is never acted on.
   */
  abstract notify(upTo?: number): Promise<void>;

  /** Does [addr, addr+len) lie in guest memory? */
  protected inMemory(req: Request): boolean {
    return this.host.memory.contains(req.addr, req.len);
  }
}

/**
 * Backends whose requests complete at once, in order: console, net-tx, blk.
 * Outputs of a batch are released together before any of its responses is
 * written, so the guest never sees a completion for an output that is not out.
 */
export abstract class InOrderBackend extends Backend {
  /** Handle one request: its status (bytes done, or a negative errno). */
  protected abstract handle(req: Request, outputs: Output[]): Promise<number> | number;

  async notify(upTo?: number): Promise<void> {
    let n = this.ring.pending(this.reqCons);
    if (upTo !== undefined) n = Math.min(n, Math.max(0, (upTo - this.reqCons) | 0));
    if (n === 0) return;
    const outputs: Output[] = [];
    const done: [Request, number][] = [];
    for (let i = 0; i < n; i++) {
      const req = this.ring.request(this.reqCons + i);
      const status = await this.handle(req, outputs);
      this.stats.requests++;
      if (status < 0) this.stats.errors++;
      else this.stats.bytes += status;
      done.push([req, status]);
    }
    if (outputs.length > 0) await this.host.release(outputs);
    for (const [req, status] of done) this.ring.respond(req.index, req.id, status);
    this.reqCons = (this.reqCons + n) >>> 0;
    this.ring.rspProd = this.reqCons;
    this.host.raise(this.port);
  }
}
