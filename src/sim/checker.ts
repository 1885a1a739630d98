/**
 * The simulator's checker: the invariants of docs/design.md, made executable.
 * It watches a World through its hooks while the run goes on — every output
 * recorded, every checkpoint committed, every disk read served, every
 * promotion — and checks the end state against a failure-free reference run.
 */
import { DeviceKind } from "../guest/abi.ts";
import type { Output } from "../devices/backend.ts";
import type { GuestConfig } from "../host/guest-config.ts";
import type { HostStatus } from "../host/status.ts";
import { GuestRunner } from "../host/runner.ts";
import type { Image } from "../image/image.ts";
import { PAGE_SIZE } from "../guest/memory.ts";
import { MemDisk } from "./stores.ts";
import type { SimHost, World } from "./world.ts";

type Copy = NonNullable<SimHost["durable"]["copy"]>;

/** What a client reading the guest's status is told by its primary, and under which generation. */
export type ClientStatus = HostStatus & { generation: number };

export interface RunStats {
  faults: number;
  takeovers: number;
  outputs: number;
}

/** Attach the checker to `w`'s hooks; call `atEnd` once the run is over. */
export function watch(w: World, config: GuestConfig, violate: (s: string) => void, stats: RunStats) {
  /** Per generation: the ring req_prod of console and net-tx in the newest acknowledged copy (or the copy its primary was promoted from). */
  const acked = new Map<number, Map<DeviceKind, number>>();
  /** Every state a primary captured under each (generation, seq): a retried checkpoint may differ from the first try. */
  const captured = new Map<string, Set<number>>();
  const ackedSeq = new Map<string, number>();
  const releaser = new Map<number, string>();
  const consumed = new Map<number, { g: number; packet: Uint8Array }>();

  /** Per generation: the guest's end (halted or crashed, with its exit code) as an acknowledged copy holds it. */
  const endsAcked = new Map<number, string>();
  /** Every value each sector has held in any acknowledged copy (a hash of its 512 bytes). */
  const ackedValues = new Map<number, Set<number>>();
  const zeroSector = hashBytes(new Uint8Array(512));
  /**
   * Commit-time checks on a copy: what it says of the disk is now acknowledged;
   * and every output its state has produced (a request the backend answered)
   * is either recorded outside already or held in the copy, to be released by
   * whoever takes over from it — else a takeover from it would lose that output.
   */
  const onCommit = (copy: Copy) => {
    // Every durable commit, not only the copies hosts are promoted from: a restart reads this one.
    const key = `${copy.meta.generation}/${copy.meta.seq}`;
    const want = captured.get(key);
    if (want !== undefined && !want.has(hashCopy(copy.pages, config.memoryPages, copy.meta.machine.pc, copy.meta.machine.instret))) {
      violate(`atomicity: a durable copy of checkpoint ${key} is not what its primary captured`);
    }
    for (const [sector, data] of copy.sectors) {
      const set = ackedValues.get(sector) ?? new Set<number>();
      set.add(hashBytes(data));
      ackedValues.set(sector, set);
    }
    for (const b of copy.meta.machine.bindings) {
      if (b.kind !== DeviceKind.CONSOLE && b.kind !== DeviceKind.NET_TX) continue;
      const rspProd = ringIndex(copy, b.ring, 8);
      const device = b.kind === DeviceKind.CONSOLE ? "console" : "net";
      const recorded = device === "console" ? w.witnessDurable.console : w.witnessDurable.packets;
      for (let i = 0; i < rspProd; i++) {
        if (recorded.has(i) || copy.outputs.some((o) => o.device === device && o.index === i)) continue;
        violate(`output commit: checkpoint ${copy.meta.generation}/${copy.meta.seq} holds the state after ${device}#${i} was produced, but neither the outside world nor the checkpoint holds that output`);
        break;
      }
    }
    noteCopy(copy, copy.meta.generation);
  };
  w.onDiskRead = (first, data, view) => {
    if (view !== "acked") return;
    for (let i = 0; i * 512 < data.length; i++) {
      const h = hashBytes(data.subarray(i * 512, (i + 1) * 512));
      if (h !== zeroSector && !ackedValues.get(first + i)?.has(h)) {
        violate(`disk reads: sector ${first + i} was shown as ${show(data.subarray(i * 512, (i + 1) * 512))}, which no acknowledged copy holds (a failover could take it back)`);
        return;
      }
    }
  };
  const noteCopy = (copy: Copy, generation: number) => {
    const machine = copy.meta.machine;
    if (machine.state === "halted" || machine.state === "crashed") endsAcked.set(generation, `${machine.state} (exit ${machine.exitCode})`);
    const m = acked.get(generation) ?? new Map<DeviceKind, number>();
    for (const b of copy.meta.machine.bindings) {
      if (b.kind !== DeviceKind.CONSOLE && b.kind !== DeviceKind.NET_TX) continue;
      const reqProd = ringIndex(copy, b.ring, 0);
      const prev = m.get(b.kind);
      if (prev === undefined || ((reqProd - prev) | 0) > 0) m.set(b.kind, reqProd);
    }
    acked.set(generation, m);
  };

  w.onRecord = (from, g, outputs, accepted) => {
    if (!accepted) return;
    const prev = releaser.get(g);
    if (prev && prev !== from) violate(`fencing: ${prev} and ${from} both released outputs under generation ${g}`);
    releaser.set(g, from);
    const current = w.witnessDurable.meta;
    if (current && current.generation !== g) violate(`fencing: an output of generation ${g} was accepted under ${current.generation}`);
    for (const o of outputs) {
      stats.outputs++;
      const kind = o.device === "console" ? DeviceKind.CONSOLE : DeviceKind.NET_TX;
      const reqProd = acked.get(g)?.get(kind);
      const ahead = reqProd === undefined ? 0 : (reqProd - o.index) >>> 0;
      if (ahead === 0 || ahead >= 2 ** 31) violate(`output commit: ${o.device}#${o.index} released under generation ${g} before any acknowledged copy held the state that produced it (acked req_prod ${reqProd ?? "none"})`);
    }
  };
  w.onReceived = (g, index, packet) => {
    const prev = consumed.get(index);
    if (!prev || prev.g <= g) consumed.set(index, { g, packet: packet.slice() });
  };

  // Atomicity and durability, checked on the copy a host is promoted from.
  const checkCopy = (h: SimHost, generation: number) => {
    const copy = h.durable.copy;
    if (!copy) return;
    const key = `${copy.meta.generation}/${copy.meta.seq}`;
    const want = captured.get(key);
    const got = hashCopy(copy.pages, config.memoryPages, copy.meta.machine.pc, copy.meta.machine.instret);
    if (want !== undefined && !want.has(got)) violate(`atomicity: ${h.place.name}'s copy of checkpoint ${key} is not what its primary captured`);
    const seen = ackedSeq.get(`${h.place.name}/${copy.meta.generation}`) ?? 0;
    if (copy.meta.seq < seen) violate(`durability: ${h.place.name} acknowledged checkpoint ${seen} of generation ${copy.meta.generation} but holds ${copy.meta.seq}`);
    noteCopy(copy, generation);
    stats.takeovers++;
  };
  w.onNewHost = (h) => (h.durable.onCommit = onCommit);
  w.beforePromote = checkCopy;
  w.onCapture = (host, generation, seq) => {
    if (host.role.kind !== "primary") return;
    const m = host.role.primary.machine;
    const key = `${generation}/${seq}`;
    const set = captured.get(key) ?? new Set<number>();
    set.add(hashMemory(m.memory.bytes, m.cpu.pc, m.cpu.instret));
    captured.set(key, set);
  };
  w.onSynced = (secondary, generation, seq) => {
    const key = `${secondary}/${generation}`;
    ackedSeq.set(key, Math.max(ackedSeq.get(key) ?? 0, seq));
  };


  return {
    /**
     * A client read the guest's status. An end it shows (halted or crashed, and
     * the exit code) is seen outside: an acknowledged copy must hold it, as it
     * holds the state behind every output — else a failover could take it back.
     */
    onStatus(s: ClientStatus): void {
      if (s.state !== "halted" && s.state !== "crashed") return;
      const shown = `${s.state} (exit ${s.exitCode})`;
      const held = endsAcked.get(s.generation);
      if (held !== shown) violate(`end commit: status showed the guest ${shown} under generation ${s.generation}, but ${held ? `the acknowledged copy holds ${held}` : "no acknowledged copy holds its end"}`);
    },
    /**
     * Nothing left in motion at the primary: the guest waits (or is done), no event on
     * its way to a backend, no output on its way to the switch. Only then may the outputs seen outside be counted against the
     * failure-free run; before, a reply may still be crossing a slow link.
     */
    settled(): boolean {
      const meta = w.witnessDurable.meta;
      if (!meta || meta.lost) return true;
      const role = w.hostInstance(w.hosts.get(meta.primary.name)!).role;
      if (role.kind !== "primary") return true;
      const p = role.primary;
      const state = p.machine.state;
      if (state !== "waiting" && state !== "halted" && state !== "crashed") return false;
      return p.outputsInFlight === 0;
    },
    async atEnd(img: Image, end: { calmMs: number; answered: number; requests: number; settled: boolean }): Promise<void> {
    const meta = w.witnessDurable.meta;
    if (meta?.lost) {
      const holder = [...w.hosts.values()].find((h) => h.durable.copy !== null);
      if (holder) violate(`liveness: declared lost (${meta.lost}) while ${holder.place.name} holds a whole acknowledged copy`);
    } else if (meta) {
      const primary = w.hosts.get(meta.primary.name)!;
      const host = w.hostInstance(primary);
      const role = host.role;
      if (role.kind !== "primary") violate(`liveness: ${end.calmMs} ms after the last fault the primary ${meta.primary.name} is ${role.kind}`);
      else {
        const state = role.primary.machine.state;
        const done = state === "halted" || state === "crashed";
        if (!done && meta.protection !== "protected") violate(`liveness: ${end.calmMs} ms after the last fault the guest is ${meta.protection}, not protected`);
        if (end.answered < end.requests) violate(`liveness: ${end.answered} of ${end.requests} requests answered ${end.calmMs} ms after the last fault`);
        await checkTransparency(role.primary.runner, role.primary.readDisk.bind(role.primary));
      }
    }

    async function checkTransparency(live: GuestRunner, readDisk: (s: number, n: number, view: "acked" | "live") => Uint8Array): Promise<void> {
      const rx = live.machine.bindingOf(DeviceKind.NET_RX);
      const rxRing = rx ? new DataView(live.memory.bytes.buffer, rx.ring) : null;
      const taken = rxRing ? rxRing.getUint32(8, true) : 0;
      const inputs: Uint8Array[] = [];
      for (let i = 0; i < taken; i++) {
        const c = consumed.get(i);
        if (!c) return violate(`transparency: the guest consumed net-rx buffer ${i}, but no packet was ever put there`);
        inputs.push(c.packet);
      }
      // As far as the live guest got, and then some: a guest that never stops (one that computes forever) is compared up to there.
      const ref = await reference(img, config, inputs, live.machine.cpu.instret * 2 + 10_000_000);
      const compare = (device: "console" | "net", got: Map<number, Uint8Array>) => {
        const want = ref.outputs.filter((o) => o.device === device);
        const indices = [...got.keys()].sort((a, b) => a - b);
        indices.forEach((idx, i) => {
          if (idx !== i) violate(`transparency: ${device} outputs have a gap before #${idx}`);
        });
        for (const idx of indices) {
          const o = want.find((x) => x.index === idx);
          if (!o) violate(`transparency: ${device}#${idx} was seen outside, but a failure-free run fed the same inputs never produced it`);
          else if (!equal(o.data, got.get(idx)!)) violate(`transparency: ${device}#${idx} differs from the failure-free run (${show(got.get(idx)!)} vs ${show(o.data)})`);
        }
        const quiet = end.settled && (live.machine.state === "halted" || live.machine.state === "crashed" || (live.machine.state === "waiting" && end.answered === end.requests));
        if (quiet && indices.length !== want.length) violate(`transparency: ${indices.length} ${device} outputs seen outside, the failure-free run made ${want.length}`);
      };
      compare("console", w.witnessDurable.console);
      compare("net", w.witnessDurable.packets);
      const sectors = new Set([...ref.disk.data.keys()]);
      for (const s of sectors) {
        if (!equal(readDisk(s, 1, "acked"), ref.disk.read(s, 1))) violate(`transparency: disk sector ${s} differs from the failure-free run`);
      }
    }

    },
  };
}

/** The failure-free run: the same image fed the inputs the guest actually consumed, one at a time. */
async function reference(img: Image, config: GuestConfig, inputs: Uint8Array[], maxInstructions: number) {
  const disk = new MemDisk(config.diskSectors);
  const outputs: Output[] = [];
  const runner = new GuestRunner(config.memoryPages, disk, async (o) => void outputs.push(...o));
  runner.load(img);
  let next = 0;
  while (runner.machine.cpu.instret < maxInstructions) {
    await runner.runSlice(1_000_000);
    if (runner.machine.runnable) continue;
    if (runner.machine.state !== "waiting" || next >= inputs.length) break;
    runner.deliverInbound(inputs[next++]);
  }
  return { outputs, disk };
}

function hashMemory(bytes: Uint8Array, pc: number, instret: number): number {
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  let h = 0x811c9dc5 ^ pc ^ instret;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return h >>> 0;
}

function hashBytes(b: Uint8Array): number {
  return hashMemory(b, 0, 0);
}

function hashCopy(pages: Map<number, Uint8Array>, memoryPages: number, pc: number, instret: number): number {
  const bytes = new Uint8Array(memoryPages * PAGE_SIZE);
  for (const [p, data] of pages) bytes.set(data, p * PAGE_SIZE);
  return hashMemory(bytes, pc, instret);
}

/** A ring index of the ring bound at `ring`, as the copy holds it: req_prod at +0, rsp_prod at +8. */
function ringIndex(copy: Copy, ring: number, offset: 0 | 8): number {
  const page = copy.pages.get(ring / PAGE_SIZE);
  return page ? new DataView(page.buffer, page.byteOffset).getUint32(offset, true) : 0;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function show(b: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(b.subarray(0, 16)).replace(/\0+$/, ""));
}
