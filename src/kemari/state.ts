/**
 * Capturing a guest's non-memory state into a checkpoint, and restoring a
 * machine from one on the host that takes over.
 */
import type { Machine } from "../guest/machine.ts";
import type { MachineState } from "./checkpoint.ts";

export function captureMachine(m: Machine): MachineState {
  return {
    regs: m.cpu.regs.slice(0, 32),
    pc: m.cpu.pc,
    instret: m.cpu.instret,
    pending: m.pending,
    state: m.state,
    exitCode: m.exitCode,
    bindings: m.bindings.filter((b) => b !== null).map((b) => ({ ...b })),
  };
}

/**
 * Put a checkpointed guest into a fresh machine: memory, CPU, event channels
 * and bindings. Backends are not attached here: the runner's `reattach`
 * rebuilds them from the rings, as a Kemari secondary's backends do.
 */
export function restoreMachine(m: Machine, state: MachineState, memory: Uint8Array): void {
  if (memory.length !== m.memory.size) throw new RangeError(`replica holds ${memory.length} bytes, the machine ${m.memory.size}`);
  if (memory !== m.memory.bytes) m.memory.bytes.set(memory);
  m.memory.clearDirty();
  m.cpu.regs.fill(0);
  m.cpu.regs.set(state.regs.subarray(1, 32), 1);
  m.cpu.pc = state.pc;
  m.cpu.instret = state.instret;
  m.pending = state.pending;
  // A guest caught mid-run resumes running; one that was waiting waits (and its pending bits wake it).
  m.state = state.state;
  if (m.state === "waiting" && m.pending !== 0) m.state = "running";
  m.exitCode = state.exitCode;
  m.bindings.fill(null);
  for (const b of state.bindings) m.bindings[b.port] = { ...b };
}

/** JSON-friendly form, for the secondary's durable metadata. */
export function machineToJson(s: MachineState): object {
  return { ...s, regs: Array.from(s.regs) };
}

export function machineFromJson(o: unknown): MachineState {
  const s = o as MachineState & { regs: number[] };
  return { ...s, regs: Int32Array.from(s.regs) };
}
