/** Block backend (kind 3): op 0 reads, op 1 writes `len` bytes (a multiple of 512) at `sector`. */
import { Errno, SECTOR_SIZE } from "../guest/abi.ts";
import { InOrderBackend } from "./backend.ts";
import type { Request } from "./ring.ts";

/** One request moves at most this much (128 sectors); more is refused with EINVAL. */
export const MAX_BLK_TRANSFER = 65536;

export const BlkOp = { READ: 0, WRITE: 1 } as const;

export class BlkBackend extends InOrderBackend {
  protected async handle(req: Request): Promise<number> {
    const { op, len, sector } = req;
    if ((op !== BlkOp.READ && op !== BlkOp.WRITE) || len === 0 || len % SECTOR_SIZE !== 0 || len > MAX_BLK_TRANSFER) return Errno.EINVAL;
    if (!this.inMemory(req)) return Errno.EINVAL;
    const count = len / SECTOR_SIZE;
    if (sector + count > this.host.disk.sectors) return Errno.EIO; // past the end of the disk
    if (op === BlkOp.READ) {
      this.host.memory.write(req.addr, this.host.disk.read(sector, count));
    } else {
      await this.host.disk.write(sector, this.host.memory.read(req.addr, len));
    }
    return len;
  }
}
