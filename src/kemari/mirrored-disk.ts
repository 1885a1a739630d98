/**
 * The primary's disk in mode kemari: a write completes only when the
 * secondary's replica holds it too (mirror first, then the local replica),
 * so a takeover never finds the disk behind the memory that wrote it.
 */
import type { Disk } from "../devices/backend.ts";

export class MirroredDisk implements Disk {
  constructor(
    private readonly local: Disk,
    private readonly mirror: (sector: number, data: Uint8Array) => Promise<void>,
  ) {}

  get sectors(): number {
    return this.local.sectors;
  }

  read(sector: number, count: number): Uint8Array {
    return this.local.read(sector, count);
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    await this.mirror(sector, data);
    await this.local.write(sector, data);
  }
}
