/**
 * Network backends: net-tx (kind 1) sends packets, net-rx (kind 2) fills the
 * buffers the guest posts with packets that arrive from the switch.
 */
import { Errno } from "../guest/abi.ts";
import { Backend, InOrderBackend, type Output } from "./backend.ts";
import { RING_SLOTS, type Request } from "./ring.ts";

export const MAX_PACKET = 4096;
/** Packets waiting for a posted buffer; beyond this the backend drops, as a NIC would. */
export const RX_QUEUE_LIMIT = 256;

export class NetTxBackend extends InOrderBackend {
  protected handle(req: Request, outputs: Output[]): number {
    if (req.op !== 0 || req.len < 1 || req.len > MAX_PACKET || !this.inMemory(req)) return Errno.EINVAL;
    outputs.push({ device: "net", index: req.index, data: this.host.memory.read(req.addr, req.len) });
    return req.len;
  }
}

export class NetRxBackend extends Backend {
  /** Packets that arrived before the guest posted a buffer for them (host-private, not replicated). */
  private readonly queue: Uint8Array[] = [];
  dropped = 0;

  /** The packets waiting for a buffer, oldest first (an idle save keeps them). */
  get queued(): readonly Uint8Array[] {
    return this.queue;
  }

  /** New buffers were posted: use them for any packets already waiting. */
  async notify(): Promise<void> {
    this.drain();
  }

  /** A packet arrived for the guest. */
  deliver(packet: Uint8Array): void {
    if (this.queue.length >= RX_QUEUE_LIMIT) {
      this.dropped++;
      return;
    }
    this.queue.push(packet);
    this.drain();
  }

  /**
   * Fill posted buffers in ring order; reqCons is the next buffer to fill. At
   * most a ring's worth of requests at a time: a frontend whose req_prod runs
   * far ahead of what it posted (a bad buffer is answered without taking a
   * packet) would otherwise keep this loop going for up to 2^32 requests.
   */
  private drain(): void {
    let filled = 0;
    while (filled < RING_SLOTS && this.queue.length > 0 && this.ring.pending(this.reqCons) > 0) {
      const req = this.ring.request(this.reqCons);
      let status: number;
      if (req.op !== 0 || req.len < 1 || !this.inMemory(req)) {
        status = Errno.EINVAL; // a bad buffer is answered; the packet waits for the next one
        this.stats.errors++;
      } else {
        const packet = this.queue.shift()!;
        const n = Math.min(packet.length, req.len);
        this.host.memory.write(req.addr, packet.subarray(0, n));
        this.host.received?.(req.index, packet);
        status = n;
        this.stats.bytes += n;
      }
      this.stats.requests++;
      this.ring.respond(req.index, req.id, status);
      this.reqCons = (this.reqCons + 1) >>> 0;
      filled++;
    }
    if (filled > 0) {
      this.ring.rspProd = this.reqCons;
      this.host.raise(this.port);
    }
  }
}
