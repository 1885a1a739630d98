/** Fault injection: what can be broken, where, and at which step of a sync. */
export const FAULT_TARGETS = ["primary", "secondary"] as const;
export type FaultTarget = (typeof FAULT_TARGETS)[number];

export const FAULT_KINDS = ["crash", "partition", "heal"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * When a crash happens: at once, or at a step of the next sync.
 * - before-transfer: the guest is paused and the checkpoint encoded, nothing sent yet
 * - mid-transfer: part of the checkpoint has been sent (the primary splits it in two);
 *   on the secondary, in the middle of applying it
 * - after-ack: the secondary holds the checkpoint; the event has not reached its backend
 * - after-release: the backend has handled the event and its outputs are out
 *   (the secondary has no release step: there it is the same as after-ack)
 */
export const FAULT_STEPS = ["now", "before-transfer", "mid-transfer", "after-ack", "after-release"] as const;
export type FaultStep = (typeof FAULT_STEPS)[number];

/**
 * Or when the guest reaches an instruction count (`kemari check` crashes at
 * random ones). The primary stops its slice exactly there and crashes; the
 * secondary, which runs no instructions, crashes once it has acknowledged a
 * checkpoint of the guest at or past that count.
 */
export interface AtInstruction {
  instruction: number;
}

export type FaultWhen = FaultStep | AtInstruction;

export interface Fault {
  target: FaultTarget;
  kind: FaultKind;
  at: FaultWhen;
}

/** How a fault's `at` reads in events and messages. */
export function describeWhen(at: FaultWhen): string {
  return typeof at === "string" ? at : `instruction ${at.instruction}`;
}
