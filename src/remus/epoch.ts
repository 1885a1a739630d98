/**
 * Remus's speculation buffer: what the guest did in the current epoch that
 * the outside world and the secondary must not see until the epoch's
 * checkpoint is acknowledged — its outputs (console, packets), and its disk
 * writes (the primary's own disk has them at once, so the guest reads its
 * writes; the secondary's replica gets them with the checkpoint).
 */
import { SECTOR_SIZE } from "../guest/abi.ts";
import type { Disk, Output } from "../devices/backend.ts";

export class Epoch {
  outputs: Output[] = [];
  /** Sector → its latest contents written in this epoch. */
  sectors = new Map<number, Uint8Array>();

  get empty(): boolean {
    return this.outputs.length === 0 && this.sectors.size === 0;
  }

  /** Hold outputs until the epoch commits. */
  hold(outputs: Output[]): void {
    for (const o of outputs) this.outputs.push(o);
  }

  /** Sector entries for the checkpoint, ascending. */
  sectorEntries(): [number, Uint8Array][] {
    return [...this.sectors].sort((a, b) => a[0] - b[0]);
  }
}

/** The primary's disk in mode remus: local at once, and remembered for the epoch's checkpoint. */
export class EpochDisk implements Disk {
  constructor(
    private readonly local: Disk,
    private readonly epoch: () => Epoch,
  ) {}

  get sectors(): number {
    return this.local.sectors;
  }

  read(sector: number, count: number): Uint8Array {
    return this.local.read(sector, count);
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    await this.local.write(sector, data);
    const e = this.epoch();
    for (let i = 0; i < data.length / SECTOR_SIZE; i++) e.sectors.set(sector + i, data.slice(i * SECTOR_SIZE, (i + 1) * SECTOR_SIZE));
  }
}
