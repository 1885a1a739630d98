/**
 * The primary's replicated disk (src/protocol/replicated-disk.ts): what a
 * reader is told of it is what the secondary holds, with several pipelined
 * checkpoints acknowledged in and out of turn.
 */
import { describe, expect, it } from "vitest";
import { ReplicatedDisk } from "../../src/protocol/replicated-disk.ts";
import { MemDisk } from "../../src/sim/stores.ts";

const sector = (byte: number) => new Uint8Array(512).fill(byte);
const first = (d: ReplicatedDisk) => d.readAcked(0, 1)[0];

/** Sector 0 written with 0xa, taken by checkpoint c1; then 0xb, taken by c2; then 0xc, taken by none. */
async function twoCaptures() {
  const d = new ReplicatedDisk(new MemDisk(8));
  await d.write(0, sector(0xa));
  const c1 = d.capture();
  await d.write(0, sector(0xb));
  const c2 = d.capture();
  await d.write(0, sector(0xc));
  return { d, c1, c2 };
}

describe("the replicated disk's acknowledged view", () => {
  it("shows what the newest acknowledged checkpoint carried, in turn", async () => {
    const { d, c1, c2 } = await twoCaptures();
    expect(first(d)).toBe(0); // nothing acknowledged yet
    d.acknowledgedCapture(c1);
    expect(first(d)).toBe(0xa);
    d.acknowledgedCapture(c2);
    expect(first(d)).toBe(0xb);
    expect(d.read(0, 1)[0]).toBe(0xc); // the guest sees its own last write
  });

  it("ignores an older checkpoint's ack that comes after a newer one's (found in review: it showed A while the secondary held B)", async () => {
    const { d, c1, c2 } = await twoCaptures();
    d.acknowledgedCapture(c2);
    expect(first(d)).toBe(0xb);
    d.acknowledgedCapture(c1);
    expect(first(d)).toBe(0xb);
  });

  it("ignores a pipelined ack that comes after a stop-and-wait checkpoint covered everything", async () => {
    const d = new ReplicatedDisk(new MemDisk(8));
    await d.write(0, sector(0xa));
    const c1 = d.capture();
    await d.write(0, sector(0xb));
    d.acknowledged();
    expect(first(d)).toBe(0xb);
    d.acknowledgedCapture(c1);
    expect(first(d)).toBe(0xb);
  });
});
