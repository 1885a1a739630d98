/**
 * A Xen-style shared ring: one 4 KiB page of guest memory (docs/guest-abi.md, "Rings").
 * In the spirit of Xen's ring.h: free-running u32 indices, slot = index mod 64,
 * the guest (frontend) produces requests, the backend produces responses.
 */
import type { Memory } from "../guest/memory.ts";

export const RING_SLOTS = 64;
export const SLOT_SIZE = 32;
export const REQ_PROD = 0x00;
export const RSP_PROD = 0x08;
export const SLOTS_OFFSET = 0x40;

export interface Request {
  /** The request's ring index: its identity as an output. */
  index: number;
  id: number;
  op: number;
  addr: number;
  len: number;
  sector: number;
}

export class Ring {
  constructor(
    readonly memory: Memory,
    readonly base: number,
  ) {}

  get reqProd(): number {
    return this.memory.readU32(this.base + REQ_PROD);
  }

  get rspProd(): number {
    return this.memory.readU32(this.base + RSP_PROD);
  }

  set rspProd(v: number) {
    this.memory.writeU32(this.base + RSP_PROD, v);
  }

  slot(index: number): number {
    return this.base + SLOTS_OFFSET + (index % RING_SLOTS) * SLOT_SIZE;
  }

  request(index: number): Request {
    const s = this.slot(index >>> 0);
    const m = this.memory;
    return { index: index >>> 0, id: m.readU32(s), op: m.readU32(s + 4), addr: m.readU32(s + 8), len: m.readU32(s + 12), sector: m.readU32(s + 16) };
  }

  /** Write the response to request `index` into its slot (rsp_prod is pushed separately). */
  respond(index: number, id: number, status: number): void {
    const s = this.slot(index >>> 0);
    this.memory.writeU32(s, id);
    this.memory.writeU32(s + 4, status | 0);
  }

  /** Requests in [from, req_prod), at most RING_SLOTS of them (a guest may not have more in flight). */
  pending(from: number): number {
    const n = (this.reqProd - from) >>> 0;
    return n > RING_SLOTS ? RING_SLOTS : n;
  }
}
