/**
 * Each device's ring protocol, driven from the frontend side by writing the
 * shared ring directly, as a guest would.
 */
import { describe, expect, it } from "vitest";
import { DeviceKind, Errno } from "../src/guest/abi.ts";
import type { Disk, Output } from "../src/devices/backend.ts";
import { RING_SLOTS, RSP_PROD, SLOTS_OFFSET, SLOT_SIZE } from "../src/devices/ring.ts";
import { GuestRunner } from "../src/host/runner.ts";
import { RX_QUEUE_LIMIT } from "../src/devices/net.ts";

export class MemoryDisk implements Disk {
  readonly bytes: Uint8Array;
  writes = 0;
  constructor(readonly sectors: number) {
    this.bytes = new Uint8Array(sectors * 512);
  }
  read(sector: number, count: number): Uint8Array {
    return this.bytes.slice(sector * 512, (sector + count) * 512);
  }
  async write(sector: number, data: Uint8Array): Promise<void> {
    this.writes++;
    this.bytes.set(data, sector * 512);
  }
}

const RING = 0x1000;
const BUF = 0x3000;

/** A runner with one device bound at RING on port 5, and a frontend to drive it. */
function rig(kind: number) {
  const released: Output[] = [];
  const disk = new MemoryDisk(64);
  const runner = new GuestRunner(16, disk, async (outs) => void released.push(...outs));
  const m = runner.machine;
  m.bindings[5] = { port: 5, kind: kind as DeviceKind, ring: RING };
  m.onConnect(m.bindings[5]);
  const mem = m.memory;
  const front = {
    submit(op: number, addr: number, len: number, sector = 0, id?: number): number {
      const idx = mem.readU32(RING);
      const slot = RING + SLOTS_OFFSET + (idx % RING_SLOTS) * SLOT_SIZE;
      mem.writeU32(slot, id ?? 0x1000 + idx);
      mem.writeU32(slot + 4, op);
      mem.writeU32(slot + 8, addr);
      mem.writeU32(slot + 12, len);
      mem.writeU32(slot + 16, sector);
      mem.writeU32(RING, idx + 1);
      return idx;
    },
    response(idx: number): { id: number; status: number } {
      const slot = RING + SLOTS_OFFSET + (idx % RING_SLOTS) * SLOT_SIZE;
      return { id: mem.readU32(slot), status: mem.view.getInt32(slot + 4, true) };
    },
    get rspProd(): number {
      return mem.readU32(RING + RSP_PROD);
    },
    notify: () => runner["backends"][5]!.notify(),
  };
  return { runner, m, mem, disk, released, front };
}

describe("console", () => {
  it("releases each write under its ring index, then answers in order and raises the port", async () => {
    const { mem, m, released, front } = rig(DeviceKind.CONSOLE);
    mem.write(BUF, new TextEncoder().encode("hello world"));
    front.submit(0, BUF, 5);
    front.submit(0, BUF + 5, 6);
    await front.notify();
    expect(released.map((o) => [o.device, o.index, new TextDecoder().decode(o.data)])).toEqual([
      ["console", 0, "hello"],
      ["console", 1, " world"],
    ]);
    expect(front.rspProd).toBe(2);
    expect(front.response(0)).toEqual({ id: 0x1000, status: 5 });
    expect(front.response(1)).toEqual({ id: 0x1001, status: 6 });
    expect(m.pending).toBe(1 << 5);
  });

  it("answers bad requests with EINVAL and releases nothing for them", async () => {
    const { released, front } = rig(DeviceKind.CONSOLE);
    front.submit(1, BUF, 4); // unknown op
    front.submit(0, 0xfffff0, 64); // outside memory
    await front.notify();
    expect(released).toEqual([]);
    expect(front.response(0).status).toBe(Errno.EINVAL);
    expect(front.response(1).status).toBe(Errno.EINVAL);
    expect(front.rspProd).toBe(2);
  });

  it("marks the pages it writes (responses) dirty", async () => {
    const { mem, front } = rig(DeviceKind.CONSOLE);
    mem.write(BUF, new Uint8Array([65]));
    front.submit(0, BUF, 1);
    mem.clearDirty();
    await front.notify();
    expect([...mem.dirtyPages()]).toEqual([RING >> 12]);
  });

  it("wraps around the 64 slots with free-running indices", async () => {
    const { mem, released, front } = rig(DeviceKind.CONSOLE);
    mem.write(BUF, new Uint8Array([120]));
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) front.submit(0, BUF, 1);
      await front.notify();
    }
    expect(front.rspProd).toBe(120);
    expect(released.map((o) => o.index)).toEqual([...Array(120).keys()]);
  });

  it("never consumes more than a ring's worth, even if req_prod is garbage", async () => {
    const { mem, front } = rig(DeviceKind.CONSOLE);
    mem.writeU32(RING, 0xfffffff0);
    await front.notify();
    expect(front.rspProd).toBe(RING_SLOTS);
  });
});

describe("net-tx", () => {
  it("sends a packet per request, identified by its ring index", async () => {
    const { mem, released, front } = rig(DeviceKind.NET_TX);
    mem.write(BUF, new Uint8Array([1, 2, 3, 4]));
    front.submit(0, BUF, 4);
    await front.notify();
    expect(released).toEqual([{ device: "net", index: 0, data: new Uint8Array([1, 2, 3, 4]) }]);
    expect(front.response(0).status).toBe(4);
  });

  it.each([[0], [4097]])("refuses a packet of %i bytes", async (len) => {
    const { released, front } = rig(DeviceKind.NET_TX);
    front.submit(0, BUF, len);
    await front.notify();
    expect(released).toEqual([]);
    expect(front.response(0).status).toBe(Errno.EINVAL);
  });
});

describe("net-rx", () => {
  it("fills posted buffers in order, truncating to the buffer", async () => {
    const { runner, mem, m, front } = rig(DeviceKind.NET_RX);
    front.submit(0, BUF, 3);
    front.submit(0, BUF + 0x100, 64);
    await front.notify();
    expect(front.rspProd).toBe(0); // nothing has arrived
    await runner.deliverInbound(new Uint8Array([9, 8, 7, 6, 5]));
    expect(front.rspProd).toBe(1);
    expect(front.response(0).status).toBe(3);
    expect([...mem.read(BUF, 4)]).toEqual([9, 8, 7, 0]);
    await runner.deliverInbound(new Uint8Array([42]));
    expect(front.response(1).status).toBe(1);
    expect(m.pending).toBe(1 << 5);
  });

  it("queues packets that arrive before a buffer is posted", async () => {
    const { runner, mem, front } = rig(DeviceKind.NET_RX);
    await runner.deliverInbound(new Uint8Array([1]));
    await runner.deliverInbound(new Uint8Array([2]));
    front.submit(0, BUF, 16);
    await front.notify();
    expect(front.rspProd).toBe(1);
    expect(mem.read(BUF, 1)[0]).toBe(1);
    front.submit(0, BUF, 16);
    await front.notify();
    expect(mem.read(BUF, 1)[0]).toBe(2);
  });

  it("answers at most a ring's worth of bad buffers per packet, however far ahead the frontend's req_prod runs", async () => {
    const { runner, mem, front } = rig(DeviceKind.NET_RX);
    // A frontend gone wrong (found by the simulator with a corrupted copy): req_prod 2^31 ahead, every slot a bad buffer.
    mem.writeU32(RING, 0x8000_0000);
    const t0 = Date.now();
    await runner.deliverInbound(new Uint8Array([1]));
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(front.rspProd).toBe(RING_SLOTS);
    expect(front.response(0).status).toBe(Errno.EINVAL);
    // The packet still waits for a good buffer.
    expect(runner.rxDropped).toBe(0);
  });

  it("drops, and counts, packets beyond its queue", async () => {
    const { runner } = rig(DeviceKind.NET_RX);
    for (let i = 0; i < RX_QUEUE_LIMIT + 3; i++) await runner.deliverInbound(new Uint8Array([i]));
    expect(runner.rxDropped).toBe(3);
  });
});

describe("blk", () => {
  it("writes and reads sectors between memory and the disk", async () => {
    const { mem, disk, front } = rig(DeviceKind.BLK);
    const data = new Uint8Array(1024).map((_, i) => i & 0xff);
    mem.write(BUF, data);
    front.submit(1, BUF, 1024, 7);
    await front.notify();
    expect(front.response(0).status).toBe(1024);
    expect(disk.read(7, 2)).toEqual(data);
    front.submit(0, BUF + 0x800, 512, 8);
    await front.notify();
    expect(mem.read(BUF + 0x800, 512)).toEqual(data.subarray(512));
  });

  it.each([
    ["an unaligned length", 1, 100, 0, Errno.EINVAL],
    ["an empty transfer", 1, 0, 0, Errno.EINVAL],
    ["an unknown op", 7, 512, 0, Errno.EINVAL],
    ["a transfer past the end of the disk", 1, 1024, 63, Errno.EIO],
  ])("answers %s with an error and leaves the disk alone", async (_what, op, len, sector, errno) => {
    const { disk, front } = rig(DeviceKind.BLK);
    front.submit(op, BUF, len, sector);
    await front.notify();
    expect(front.response(0).status).toBe(errno);
    expect(disk.writes).toBe(0);
  });
});

describe("failover cursor rebuild", () => {
  it("a fresh backend treats [rsp_prod, req_prod) as outstanding and processes it again", async () => {
    const { runner, mem, released, front } = rig(DeviceKind.CONSOLE);
    mem.write(BUF, new TextEncoder().encode("ab"));
    front.submit(0, BUF, 1);
    await front.notify();
    front.submit(0, BUF + 1, 1); // published, never notified: the host died here
    released.length = 0;
    await runner.reattach(); // a new host's backends, from the ring alone
    expect(released.map((o) => [o.index, new TextDecoder().decode(o.data)])).toEqual([[1, "b"]]);
    expect(front.rspProd).toBe(2);
  });
});
