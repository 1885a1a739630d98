/**
 * The guest machine per the ABI (docs/guest-abi.md): hypercalls, the event
 * channel, device binding, and the guest states with their transitions.
 */
import { describe, expect, it } from "vitest";
import { DeviceKind, Errno, Hypercall, Reg } from "../src/guest/abi.ts";
import { Machine, type Binding, type MachineEnv } from "../src/guest/machine.ts";
import { assemble } from "../src/image/assembler.ts";

const PAGES = 16;
const SIZE = PAGES * 4096;

/** An env that counts its calls and returns scripted values. */
function scriptedEnv(times: number[] = [0], randoms: number[] = [0]) {
  const calls = { now: 0, random32: 0 };
  const env: MachineEnv = {
    now: () => times[Math.min(calls.now++, times.length - 1)],
    random32: () => randoms[Math.min(calls.random32++, randoms.length - 1)],
  };
  return { env, calls };
}

function boot(asm: string, env: MachineEnv = scriptedEnv().env, pages = PAGES): Machine {
  const m = new Machine(pages, env);
  m.load(assemble(asm));
  return m;
}

const a0 = (m: Machine): number => m.cpu.regs[Reg.a0];
const REGS = { s0: 8, s1: 9, s2: 18, a1: 11 } as const;
const reg = (m: Machine, name: keyof typeof REGS): number => m.cpu.regs[REGS[name]];

/** The address of a label in the program (for pc checks). */
const at = (asm: string, label: string): number => assemble(asm).symbols[label];

// ───────────────────────── HALT ─────────────────────────

describe("HALT", () => {
  it.each([0, 42, -5, 0x7fffffff, -0x80000000])("exit code %i → halted with that code", (code) => {
    const src = `li a0, ${code}\n li a7, ${Hypercall.HALT}\n ecall\n after: ebreak`;
    const m = boot(src);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("halted");
    expect(m.exitCode).toBe(code);
    expect(m.crash).toBeNull();
    expect(m.cpu.pc).toBe(at(src, "after"));
  });

  it("a halted guest never runs again and cannot be resumed", () => {
    const m = boot(`li a7, 0\n ecall\n li s0, 1\n ebreak`);
    m.run(1000);
    const retired = m.cpu.instret;
    expect(m.resume()).toBe(false);
    expect(m.pause()).toBe(false);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("halted");
    expect(m.cpu.instret).toBe(retired);
    expect(reg(m, "s0")).toBe(0);
  });
});

// ───────────────────────── NOTIFY ─────────────────────────

describe("NOTIFY", () => {
  it.each([0, 5, 31, 32, -1, 1000])("to unbound port %i → -22, the guest keeps running", (port) => {
    const m = boot(`li a0, ${port}\n li a7, ${Hypercall.NOTIFY}\n ecall\n mv s0, a0\n ebreak`);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s0")).toBe(Errno.EINVAL);
  });

  it("to a bound port → run() returns the event, a0 = 0, and the next run continues after it", () => {
    const src = `
      li a0, ${DeviceKind.NET_TX}
      li a1, 0x8000
      li a2, 7
      li a7, ${Hypercall.CONNECT}
      ecall
      mv s0, a0
      li a0, 7
      li a7, ${Hypercall.NOTIFY}
      ecall
    after:
      mv s1, a0
      ebreak`;
    const m = boot(src);
    const binding: Binding = { port: 7, kind: DeviceKind.NET_TX, ring: 0x8000 };
    expect(m.run(1000)).toEqual({ kind: "notify", port: 7, binding });
    expect(reg(m, "s0")).toBe(0);
    expect(m.state).toBe("running");
    expect(m.cpu.pc).toBe(at(src, "after"));
    expect(a0(m)).toBe(0);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s1")).toBe(0);
  });

  it("every notify is its own event, even in a loop", () => {
    const m = boot(`
      li a0, 0; li a1, 0x4000; li a2, 2; li a7, 3; ecall
      li s0, 3
    1: li a0, 2; li a7, 1; ecall
      addi s0, s0, -1
      bnez s0, 1b
      li a7, 0; ecall`);
    const events = [];
    for (let i = 0; i < 10 && m.state === "running"; i++) events.push(m.run(1000).kind);
    expect(events).toEqual(["notify", "notify", "notify", "stopped"]);
    expect(m.state).toBe("halted");
  });
});

// ───────────────────────── WAIT and POLL ─────────────────────────

describe("WAIT", () => {
  const src = `
    li a7, ${Hypercall.WAIT}
    ecall
    mv s0, a0
  second:
    li a7, ${Hypercall.WAIT}
  wait2:
    ecall
    mv s1, a0
    ebreak`;

  it("returns the pending bitmap and clears it", () => {
    const m = boot(src);
    m.raise(4);
    m.raise(7);
    m.raise(4);
    expect(m.pending).toBe((1 << 4) | (1 << 7));
    m.run(1000);
    expect(reg(m, "s0")).toBe((1 << 4) | (1 << 7));
    expect(m.pending).toBe(0);
  });

  it("blocks (state waiting) when nothing is pending, and wakes on raise(port)", () => {
    const m = boot(src);
    m.raise(0);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("waiting");
    expect(m.runnable).toBe(false);
    expect(m.cpu.pc).toBe(at(src, "wait2")); // parked on the ecall itself
    const retired = m.cpu.instret;

    // Waiting costs no CPU: running it again does nothing.
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.cpu.instret).toBe(retired);
    expect(m.state).toBe("waiting");

    m.raise(31);
    expect(m.state).toBe("running");
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s0")).toBe(1);
    expect(reg(m, "s1") >>> 0).toBe(0x80000000);
    expect(m.pending).toBe(0);
    // The blocked attempt did not retire: li, ecall, mv, li, ecall, mv, ebreak.
    expect(m.cpu.instret).toBe(7);
  });

  it("events raised while running are kept for the next WAIT", () => {
    const m = boot(src);
    m.raise(3);
    m.run(3); // li, ecall (collects 1<<3), mv
    expect(reg(m, "s0")).toBe(1 << 3);
    m.raise(9);
    m.raise(10);
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s1")).toBe((1 << 9) | (1 << 10));
  });
});

describe("POLL", () => {
  const src = `
    li a7, ${Hypercall.POLL}
    ecall
    mv s0, a0
    li a7, ${Hypercall.POLL}
    ecall
    mv s1, a0
    ebreak`;

  it("returns 0 at once when nothing is pending", () => {
    const m = boot(src);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s0")).toBe(0);
    expect(reg(m, "s1")).toBe(0);
  });

  it("returns and clears the pending bitmap like WAIT", () => {
    const m = boot(src);
    m.raise(1);
    m.raise(30);
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s0")).toBe((1 << 1) | (1 << 30));
    expect(reg(m, "s1")).toBe(0);
    expect(m.pending).toBe(0);
  });
});

// ───────────────────────── CONNECT ─────────────────────────

/** Where the CONNECT test programs store each result. */
const RESULTS = 0x700;

function connectSrc(calls: [kind: number, ring: number, port: number][]): string {
  const body = calls
    .map(([k, r, p], i) => `li a0, ${k}\n li a1, ${r}\n li a2, ${p}\n li a7, ${Hypercall.CONNECT}\n ecall\n sw a0, ${RESULTS + 4 * i}(zero)`)
    .join("\n");
  return `${body}\n ebreak`;
}

/** Run a sequence of CONNECTs; returns the machine, each result, and the bindings reported to onConnect. */
function connect(...calls: [kind: number, ring: number, port: number][]) {
  const m = boot(connectSrc(calls));
  const seen: Binding[] = [];
  m.onConnect = (b) => void seen.push(b);
  m.run(10_000);
  expect(m.state).toBe("breakpoint");
  const results = calls.map((_, i) => m.memory.view.getInt32(RESULTS + 4 * i, true));
  return { m, results, seen };
}

describe("CONNECT", () => {
  it.each([
    { why: "a valid binding", kind: DeviceKind.CONSOLE, ring: 0x4000, port: 1, want: 0 },
    { why: "the last page of memory", kind: DeviceKind.BLK, ring: SIZE - 4096, port: 31, want: 0 },
    { why: "page 0, port 0", kind: DeviceKind.NET_RX, ring: 0, port: 0, want: 0 },
    { why: "a misaligned ring page", kind: DeviceKind.CONSOLE, ring: 0x4004, port: 1, want: Errno.EINVAL },
    { why: "a half-page-aligned ring", kind: DeviceKind.CONSOLE, ring: 0x4800, port: 1, want: Errno.EINVAL },
    { why: "a ring page just outside memory", kind: DeviceKind.CONSOLE, ring: SIZE, port: 1, want: Errno.EINVAL },
    { why: "a ring page far outside memory", kind: DeviceKind.CONSOLE, ring: 0xfffff000, port: 1, want: Errno.EINVAL },
    { why: "port 32", kind: DeviceKind.CONSOLE, ring: 0x4000, port: 32, want: Errno.EINVAL },
    { why: "port -1", kind: DeviceKind.CONSOLE, ring: 0x4000, port: -1, want: Errno.EINVAL },
    { why: "device kind 4", kind: 4, ring: 0x4000, port: 1, want: Errno.EINVAL },
    { why: "device kind -1", kind: -1, ring: 0x4000, port: 1, want: Errno.EINVAL },
  ])("$why → $want", ({ kind, ring, port, want }) => {
    const { m, results, seen } = connect([kind, ring, port]);
    expect(results).toEqual([want]);
    if (want === 0) {
      const b: Binding = { port, kind: kind as DeviceKind, ring };
      expect(m.bindings[port]).toEqual(b);
      expect(m.bindingOf(kind as DeviceKind)).toEqual(b);
      expect(seen).toEqual([b]);
    } else {
      expect(m.bindings.every((b) => b === null)).toBe(true);
      expect(seen).toEqual([]);
    }
  });

  it("-16 for a kind or a port already bound; the first binding stays", () => {
    const { m, results, seen } = connect(
      [DeviceKind.CONSOLE, 0x4000, 1],
      [DeviceKind.CONSOLE, 0x5000, 2], // kind bound (on port 1)
      [DeviceKind.NET_TX, 0x5000, 1], // port bound (to the console)
      [DeviceKind.NET_TX, 0x5000, 2], // fine
      [DeviceKind.NET_TX, 0x6000, 3], // kind bound again
      [DeviceKind.BLK, 0x7000, 4], // fine
    );
    expect(results).toEqual([0, Errno.EBUSY, Errno.EBUSY, 0, Errno.EBUSY, 0]);
    expect(m.bindings[1]).toEqual({ port: 1, kind: DeviceKind.CONSOLE, ring: 0x4000 });
    expect(m.bindings[2]).toEqual({ port: 2, kind: DeviceKind.NET_TX, ring: 0x5000 });
    expect(m.bindings[3]).toBeNull();
    expect(seen.map((b) => b.port)).toEqual([1, 2, 4]);
  });
});

// ───────────────────────── TIME, RANDOM, unknown ─────────────────────────

describe("TIME", () => {
  it.each([
    { ms: 0, lo: 0, hi: 0 },
    { ms: 1_700_000_000_123, lo: 1_700_000_000_123 % 2 ** 32, hi: Math.floor(1_700_000_000_123 / 2 ** 32) },
    { ms: 0x1_2345_6789, lo: 0x23456789, hi: 1 },
    { ms: 0xffff_ffff, lo: 0xffffffff, hi: 0 },
    { ms: 0x7_ffff_ffff, lo: 0xffffffff, hi: 7 },
  ])("now() = $ms → a0 = $lo, a1 = $hi", ({ ms, lo, hi }) => {
    const { env, calls } = scriptedEnv([ms]);
    const m = boot(`li a1, 99\n li a7, ${Hypercall.TIME}\n ecall\n ebreak`, env);
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect(a0(m) >>> 0).toBe(lo);
    expect(reg(m, "a1") >>> 0).toBe(hi);
    expect(calls.now).toBe(1);
  });

  it("asks the env every time", () => {
    const { env, calls } = scriptedEnv([10, 20, 30]);
    const m = boot(`li a7, 5\n ecall\n mv s0, a0\n ecall\n mv s1, a0\n li a7, 5\n ecall\n mv s2, a0\n ebreak`, env);
    m.run(1000);
    expect([reg(m, "s0"), reg(m, "s1"), reg(m, "s2")]).toEqual([10, 20, 30]);
    expect(calls.now).toBe(3);
  });
});

describe("RANDOM", () => {
  it("returns the env's 32 random bits in a0, one draw per call", () => {
    const { env, calls } = scriptedEnv([0], [0xdeadbeef, 0, 0x80000000]);
    const m = boot(`li a7, ${Hypercall.RANDOM}\n ecall\n mv s0, a0\n ecall\n mv s1, a0\n li a7, 6\n ecall\n mv s2, a0\n ebreak`, env);
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect([reg(m, "s0"), reg(m, "s1"), reg(m, "s2")].map((v) => v >>> 0)).toEqual([0xdeadbeef, 0, 0x80000000]);
    expect(calls.random32).toBe(3);
  });
});

describe("unknown hypercalls", () => {
  it.each([7, 8, 100, 0x7fffffff, -1])("a7 = %i → -38, and the guest goes on", (nr) => {
    const m = boot(`li a0, 123\n li a7, ${nr}\n ecall\n mv s0, a0\n li a0, 0\n li a7, 0\n ecall`);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("halted");
    expect(reg(m, "s0")).toBe(Errno.ENOSYS);
  });
});

// ───────────────────────── EBREAK and crashes ─────────────────────────

describe("EBREAK", () => {
  it("stops in breakpoint after the ebreak; resume() continues from there", () => {
    const src = `li s0, 1\n ebreak\n after: li s0, 2\n ebreak\n li a0, 9\n li a7, 0\n ecall`;
    const m = boot(src);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("breakpoint");
    expect(m.cpu.pc).toBe(at(src, "after"));
    expect(reg(m, "s0")).toBe(1);

    // Not runnable until resumed.
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(reg(m, "s0")).toBe(1);

    expect(m.resume()).toBe(true);
    expect(m.state).toBe("running");
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s0")).toBe(2);
    expect(m.resume()).toBe(true);
    m.run(1000);
    expect(m.state).toBe("halted");
    expect(m.exitCode).toBe(9);
  });
});

describe("crashes", () => {
  it.each([
    { why: "an illegal instruction", body: "li s0, 1\n fault: .word 0xffffffff", reason: "illegal instruction 0xffffffff" },
    { why: "a load outside memory", body: `li t0, ${SIZE}\n fault: lw t1, 0(t0)`, reason: `load outside memory at 0x${SIZE.toString(16).padStart(8, "0")}` },
    { why: "a store outside memory", body: "li t0, -4\n fault: sw t1, 0(t0)", reason: "store outside memory at 0xfffffffc" },
    { why: "a misaligned jump", body: "li t0, 6\n fault: jr t0", reason: "misaligned jump target 0x00000006" },
  ])("$why → crashed with reason and pc, and never runs again", ({ body, reason }) => {
    const src = `${body}\n li s1, 1\n ebreak`;
    const m = boot(src);
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("crashed");
    expect(m.crash).toEqual({ reason, pc: at(src, "fault") });
    const retired = m.cpu.instret;
    const pc = m.cpu.pc;

    expect(m.resume()).toBe(false);
    expect(m.pause()).toBe(false);
    m.raise(1);
    expect(m.state).toBe("crashed");
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("crashed");
    expect(m.cpu.instret).toBe(retired);
    expect(m.cpu.pc).toBe(pc);
    expect(reg(m, "s1")).toBe(0);
  });
});

// ───────────────────────── reset, pause/resume, budget ─────────────────────────

describe("reset state", () => {
  it.each([16, 32, 256])("%i pages: every register 0 except sp = memory size; pc = the entry", (pages) => {
    const src = `.word 0, 0, 0\n _start: ebreak`;
    const m = boot(src, scriptedEnv().env, pages);
    expect(m.cpu.pc).toBe(12);
    expect(m.state).toBe("running");
    expect(m.exitCode).toBeNull();
    expect(m.crash).toBeNull();
    expect(m.pending).toBe(0);
    const want = new Array<number>(32).fill(0);
    want[Reg.sp] = pages * 4096;
    expect([...m.cpu.regs.slice(0, 32)]).toEqual(want);
    expect(m.run(10)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("breakpoint");
  });

  it("without _start the entry is 0", () => {
    const m = boot(`li s0, 5\n ebreak`);
    expect(m.cpu.pc).toBe(0);
    m.run(10);
    expect(reg(m, "s0")).toBe(5);
  });
});

describe("pause and resume", () => {
  const loop = `1: addi s0, s0, 1\n j 1b`;

  it("a paused guest runs nothing until resumed", () => {
    const m = boot(loop);
    m.run(10);
    expect(m.pause()).toBe(true);
    expect(m.state).toBe("paused");
    expect(m.runnable).toBe(false);
    const retired = m.cpu.instret;
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.cpu.instret).toBe(retired);
    expect(m.pause()).toBe(false); // already paused
    expect(m.resume()).toBe(true);
    expect(m.state).toBe("running");
    expect(m.resume()).toBe(false); // already running
    expect(m.run(10)).toEqual({ kind: "budget" });
    expect(m.cpu.instret).toBe(retired + 10);
  });

  it("a waiting guest can be paused; an event then does not wake it, but resume re-runs its WAIT", () => {
    const m = boot(`li a7, 2\n ecall\n mv s0, a0\n ebreak`);
    m.run(1000);
    expect(m.state).toBe("waiting");
    expect(m.pause()).toBe(true);
    expect(m.state).toBe("paused");
    m.raise(6);
    expect(m.state).toBe("paused");
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(reg(m, "s0")).toBe(0);
    expect(m.resume()).toBe(true);
    m.run(1000);
    expect(m.state).toBe("breakpoint");
    expect(reg(m, "s0")).toBe(1 << 6);
  });

  it("a paused waiting guest resumed with nothing pending waits again", () => {
    const m = boot(`li a7, 2\n ecall\n ebreak`);
    m.run(1000);
    m.pause();
    m.resume();
    expect(m.run(1000)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("waiting");
  });
});

describe("instruction budget", () => {
  const loop = `1: addi s0, s0, 1\n j 1b`;

  it.each([1, 2, 99, 100, 1001])("run(%i) on an endless loop retires exactly that many and returns budget", (budget) => {
    const m = boot(loop);
    expect(m.run(budget)).toEqual({ kind: "budget" });
    expect(m.state).toBe("running");
    expect(m.cpu.instret).toBe(budget);
    expect(reg(m, "s0")).toBe(Math.ceil(budget / 2));
  });

  it("run(0) executes nothing", () => {
    const m = boot(loop);
    expect(m.run(0)).toEqual({ kind: "budget" });
    expect(m.cpu.instret).toBe(0);
    expect(m.cpu.pc).toBe(0);
  });

  it("hypercalls count against the budget, and successive slices add up", () => {
    const m = boot(`1: li a7, 4\n ecall\n addi s0, s0, 1\n j 1b`);
    for (let i = 0; i < 10; i++) expect(m.run(8)).toEqual({ kind: "budget" });
    expect(m.cpu.instret).toBe(80);
    expect(reg(m, "s0")).toBe(20);
  });

  it("a slice that ends exactly on HALT stops the guest", () => {
    const m = boot(`li a0, 3\n li a7, 0\n ecall`);
    expect(m.run(2)).toEqual({ kind: "budget" });
    expect(m.state).toBe("running");
    expect(m.run(1)).toEqual({ kind: "stopped" });
    expect(m.state).toBe("halted");
    expect(m.exitCode).toBe(3);
    expect(m.cpu.instret).toBe(3);
  });
});
