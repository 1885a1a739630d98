/**
 * A host: one Durable Object in one region, playing a "physical machine" for
 * a guest. It owns the guest's memory (in RAM only, like a real host: a
 * restart loses it), a disk replica in SQLite, and drives the guest in bounded
 * slices from its alarm so that one busy guest never starves its requests.
 */
import { DurableObject } from "cloudflare:workers";
import type { Output } from "../src/devices/backend.ts";
import type { Env } from "../src/env.ts";
import type { Image } from "../src/image/image.ts";
import { GuestError, outcome, type Outcome } from "../src/host/errors.ts";
import { SLICES_PER_ALARM, SLICE_INSTRUCTIONS, type GuestConfig } from "../src/host/guest-config.ts";
import { GuestRunner } from "../src/host/runner.ts";
import type { HostStatus } from "../src/host/status.ts";
import { SqlDisk } from "./sql-disk.ts";

interface HostMeta {
  config: GuestConfig;
  /** Name of the guest's switch, where outputs go. */
  switchName: string;
}

export class GuestHost extends DurableObject<Env> {
  private runner: GuestRunner | null = null;
  private meta: HostMeta | null = null;
  private pumping = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    const row = ctx.storage.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'host'").toArray()[0];
    this.meta = row ? (JSON.parse(row.v) as HostMeta) : null;
  }

  /** Become the primary for a new guest: load the image and start running it. */
  start(config: GuestConfig, image: Image, switchName: string): Promise<Outcome<HostStatus>> {
    return outcome(() => this.startGuest(config, image, switchName));
  }

  private async startGuest(config: GuestConfig, image: Image, switchName: string): Promise<HostStatus> {
    if (this.meta) throw new GuestError("conflict", `host already runs guest ${this.meta.config.id}`);
    this.meta = { config, switchName };
    this.ctx.storage.sql.exec("INSERT INTO meta (k, v) VALUES ('host', ?)", JSON.stringify(this.meta));
    const runner = this.newRunner(config, switchName);
    runner.load(image);
    this.runner = runner;
    await this.schedule();
    return this.snapshot();
  }

  private newRunner(config: GuestConfig, switchName: string): GuestRunner {
    const sw = this.env.SWITCH.get(this.env.SWITCH.idFromName(switchName));
    const disk = new SqlDisk(this.ctx.storage, config.diskSectors);
    return new GuestRunner(config.memoryPages, disk, (outputs: Output[]) => sw.record(outputs));
  }

  /** The running guest, or an error that says why there is none. */
  private guest(): GuestRunner {
    if (this.runner) return this.runner;
    if (this.meta) throw new GuestError("lost", LOST);
    throw new GuestError("not-found", "no guest on this host");
  }

  status(): Promise<Outcome<HostStatus>> {
    return outcome(() => this.snapshot());
  }

  private snapshot(): HostStatus {
    if (!this.runner) {
      if (!this.meta) throw new GuestError("not-found", "no guest on this host");
      // The object restarted: its RAM, and with it the guest, is gone.
      return lostStatus();
    }
    const r = this.runner;
    const m = r.machine;
    return {
      state: m.state,
      exitCode: m.exitCode,
      crash: m.crash,
      pc: m.cpu.pc,
      instructions: m.cpu.instret,
      pending: m.pending,
      dirtyPages: m.memory.dirtyPageCount,
      rxDropped: r.rxDropped,
      counters: { ...r.counters },
      devices: r.devices(),
    };
  }

  pause(): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      const r = this.guest();
      await r.exclusive(async () => {
        if (!r.machine.pause() && r.state !== "paused") throw new GuestError("conflict", `cannot pause a guest that is ${r.state}`);
      });
      return this.snapshot();
    });
  }

  resume(): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      const r = this.guest();
      if (!r.machine.resume() && r.state !== "running" && r.state !== "waiting") {
        throw new GuestError("conflict", `cannot resume a guest that is ${r.state}`);
      }
      await this.schedule();
      return this.snapshot();
    });
  }

  step(instructions: number): Promise<Outcome<HostStatus>> {
    return outcome(async () => {
      const r = this.guest();
      if (r.state !== "paused" && r.state !== "breakpoint") {
        throw new GuestError("conflict", `only a paused guest can be stepped; this one is ${r.state}`);
      }
      await r.step(instructions);
      return this.snapshot();
    });
  }

  inbound(packet: Uint8Array): Promise<Outcome<void>> {
    return outcome(async () => {
      this.guest().deliverInbound(packet);
      await this.schedule();
    });
  }

  readMemory(addr: number, len: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => {
      const memory = this.guest().memory;
      if (!memory.contains(addr, len)) {
        throw new GuestError("bad-request", `addr + len (${addr} + ${len}) is beyond the guest's ${memory.size} bytes of memory`, "addr");
      }
      return memory.read(addr, len);
    });
  }

  readDisk(sector: number, count: number): Promise<Outcome<Uint8Array>> {
    return outcome(() => {
      const disk = this.guest().disk;
      if (sector + count > disk.sectors) {
        throw new GuestError("bad-request", `sector + count (${sector} + ${count}) is beyond the disk's ${disk.sectors} sectors`, "sector");
      }
      return disk.read(sector, count);
    });
  }

  /** Forget the guest and everything stored for it. */
  async destroy(): Promise<void> {
    const r = this.runner;
    this.runner = null;
    this.meta = null;
    if (r) await r.exclusive(async () => r.machine.pause());
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
  }

  /** Make sure a runnable guest has an alarm coming to drive it. */
  private async schedule(): Promise<void> {
    if (!this.runner?.machine.runnable || this.pumping) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  /**
   * Drive the guest for a bounded number of slices, yielding between them so
   * requests (status, pause, inbound packets) are served in between; then
   * hand back to the scheduler with a new alarm if it is still running.
   */
  override async alarm(): Promise<void> {
    const r = this.runner;
    if (!r || this.pumping) return;
    this.pumping = true;
    try {
      for (let i = 0; i < SLICES_PER_ALARM && r.machine.runnable && this.runner === r; i++) {
        await r.runSlice(SLICE_INSTRUCTIONS);
        await yieldToRequests();
      }
    } finally {
      this.pumping = false;
    }
    if (this.runner === r && r.machine.runnable) await this.ctx.storage.setAlarm(Date.now());
  }
}

const LOST = "the host restarted and lost the guest's memory (mode none keeps no copy)";

function lostStatus(): HostStatus {
  return {
    state: "crashed",
    exitCode: null,
    crash: { reason: LOST, pc: 0 },
    pc: 0,
    instructions: 0,
    pending: 0,
    dirtyPages: 0,
    rxDropped: 0,
    counters: { events: 0, outputs: 0, consoleBytes: 0, packetsOut: 0, packetsIn: 0 },
    devices: [],
  };
}

function yieldToRequests(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
