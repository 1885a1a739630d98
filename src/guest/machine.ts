/**
 * The guest machine: one RV32IM hart, its memory, the event-channel bitmap and
 * the device bindings — exactly the guest state a protected host (mode kemari
 * or remus) replicates, besides the disk. The backends
 * that serve the devices are not here: they belong to the host (src/devices).
 *
 * `run` stops at every NOTIFY to a bound port and hands the event to its
 * caller instead of delivering it: that is Kemari's event tap. The host decides
 * what happens before the event reaches the backend (nothing in mode `none`,
 * a synchronisation to the secondary in mode `kemari`; in mode `remus` the
 * event goes through at once and its outputs wait for their epoch's checkpoint).
 */
import { DeviceKind, Errno, Hypercall, PORTS, Reg, type GuestState } from "./abi.ts";
import { Cpu, Exit, type Fault } from "./cpu.ts";
import { Memory, PAGE_SIZE } from "./memory.ts";
import { warmUpInterpreter } from "./warm-up.ts";
import type { Image } from "../image/image.ts";

export interface Binding {
  port: number;
  kind: DeviceKind;
  /** Guest address of the ring page. */
  ring: number;
}

/** The non-deterministic inputs a guest can ask for; injectable for tests. */
export interface MachineEnv {
  now(): number;
  random32(): number;
}

export const defaultEnv: MachineEnv = {
  now: () => Date.now(),
  random32: () => crypto.getRandomValues(new Uint32Array(1))[0],
};

export type RunResult =
  /** The slice is used up; the guest is still running. */
  | { kind: "budget" }
  /** The guest notified a bound port: the event waits for the host to deliver it. */
  | { kind: "notify"; port: number; binding: Binding }
  /** The guest is no longer running: see `state`. */
  | { kind: "stopped" };

const BUDGET: RunResult = { kind: "budget" };
const STOPPED: RunResult = { kind: "stopped" };

/**
 * The most instructions one call of the interpreter's loop (Cpu.run) runs; a
 * longer run calls it again. Many short calls make V8 optimise it as a hot
 * function, entered optimised at every call. With one long call per slice it
 * was optimised on the stack (OSR) only, and inside workerd whether that
 * happened depended on unrelated code in the bundle: two builds that differed
 * only outside the interpreter ran a compute-bound guest at 9–13 M
 * instructions/s instead of 150–190 (2026-12-02, `wrangler dev`, every slice
 * slow). Chunked, the same slow build ran at 68–159 M/s, and a remus guest
 * computed at 0.8–0.9× mode none's rate where single calls gave 0.4–1.1×.
 * 65,536 instructions are ~0.4 ms: the extra calls cost nothing measurable.
 */
const RUN_CHUNK = 65_536;

export class Machine {
  readonly memory: Memory;
  readonly cpu: Cpu;
  state: GuestState = "running";
  exitCode: number | null = null;
  crash: Fault | null = null;
  /** Event-channel bitmap: bit p set = port p has an event the guest has not collected. */
  pending = 0;
  /** Device bindings by port. */
  readonly bindings: (Binding | null)[] = new Array<Binding | null>(PORTS).fill(null);
  /** Called when the guest binds a device, so the host can attach its backend. */
  onConnect: (binding: Binding) => void = () => {};

  constructor(
    pages: number,
    private readonly env: MachineEnv = defaultEnv,
    bytes?: Uint8Array,
  ) {
    // Before the first guest's loop gets hot: see warm-up.ts.
    warmUpInterpreter();
    this.memory = new Memory(pages, bytes);
    this.cpu = new Cpu(this.memory, { now: () => env.now() });
  }

  /** Load an image and reset the hart (ABI: sp = memory size, pc = entry). */
  load(image: Image): void {
    for (const s of image.segments) this.memory.write(s.addr, s.data);
    this.cpu.reset(image.entry, this.memory.size);
  }

  get runnable(): boolean {
    return this.state === "running";
  }

  /** Execute up to `budget` instructions, stopping early at an event or a state change. */
  run(budget: number): RunResult {
    const cpu = this.cpu;
    let left = budget;
    while (left > 0 && this.state === "running") {
      const before = cpu.instret;
      const exit = cpu.run(left < RUN_CHUNK ? left : RUN_CHUNK);
      left -= cpu.instret - before;
      if (exit === Exit.BUDGET) {
        // A chunk's end: run on. A store that found memory braking ended it early: stop here.
        if (left > 0 && !this.memory.braking) continue;
        return BUDGET;
      }
      if (exit === Exit.FAULT) {
        this.state = "crashed";
        this.crash = cpu.fault;
        return STOPPED;
      }
      if (exit === Exit.EBREAK) {
        // Resumable: continue after the ebreak, as a debugger would.
        cpu.pc += 4;
        this.state = "breakpoint";
        return STOPPED;
      }
      const event = this.hypercall();
      if (event) return event;
    }
    return this.state === "running" ? BUDGET : STOPPED;
  }

  /** An event for the guest on `port` (a backend's response, a received packet). */
  raise(port: number): void {
    this.pending = (this.pending | (1 << port)) >>> 0;
    if (this.state === "waiting") this.state = "running";
  }

  pause(): boolean {
    if (this.state !== "running" && this.state !== "waiting") return false;
    // A waiting guest sits on its WAIT ecall; on resume it executes it again.
    this.state = "paused";
    return true;
  }

  resume(): boolean {
    if (this.state !== "paused" && this.state !== "breakpoint") return false;
    this.state = "running";
    return true;
  }

  bindingOf(kind: DeviceKind): Binding | null {
    for (const b of this.bindings) if (b && b.kind === kind) return b;
    return null;
  }

  private hypercall(): RunResult | null {
    const cpu = this.cpu;
    const r = cpu.regs;
    const nr = r[Reg.a7];
    const ret = (v: number): null => {
      r[Reg.a0] = v;
      cpu.pc += 4;
      return null;
    };
    switch (nr) {
      case Hypercall.HALT:
        this.state = "halted";
        this.exitCode = r[Reg.a0];
        cpu.pc += 4;
        return STOPPED;
      case Hypercall.NOTIFY: {
        const port = r[Reg.a0];
        const binding = port >= 0 && port < PORTS ? this.bindings[port] : null;
        if (!binding) return ret(Errno.EINVAL);
        ret(0);
        return { kind: "notify", port, binding };
      }
      case Hypercall.WAIT:
        if (this.pending === 0) {
          // Block on the ecall itself: pc stays, and it runs again when woken.
          // It has not retired, so it is not counted.
          cpu.instret--;
          this.state = "waiting";
          return STOPPED;
        }
        return this.collect();
      case Hypercall.POLL:
        return this.collect();
      case Hypercall.CONNECT:
        return ret(this.connect(r[Reg.a0], r[Reg.a1] >>> 0, r[Reg.a2]));
      case Hypercall.TIME: {
        const t = this.env.now();
        r[Reg.a1] = Math.floor(t / 0x100000000) | 0;
        return ret(t | 0);
      }
      case Hypercall.RANDOM:
        return ret(this.env.random32() | 0);
      default:
        return ret(Errno.ENOSYS);
    }
  }

  private collect(): null {
    const bits = this.pending;
    this.pending = 0;
    this.cpu.regs[Reg.a0] = bits | 0;
    this.cpu.pc += 4;
    return null;
  }

  private connect(kind: number, ring: number, port: number): number {
    if (kind < DeviceKind.CONSOLE || kind > DeviceKind.BLK) return Errno.EINVAL;
    if (port < 0 || port >= PORTS) return Errno.EINVAL;
    if (ring % PAGE_SIZE !== 0 || ring + PAGE_SIZE > this.memory.size) return Errno.EINVAL;
    if (this.bindings[port] || this.bindingOf(kind as DeviceKind)) return Errno.EBUSY;
    const binding: Binding = { port, kind: kind as DeviceKind, ring };
    this.bindings[port] = binding;
    this.onConnect(binding);
    return 0;
  }
}
