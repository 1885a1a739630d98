/**
 * The fault injector's triggers on one host (durable-objects/host-faults.ts),
 * with a stand-in for the object's `ctx.abort`: a crash armed for an
 * instruction count (`at: {instruction: n}`) stops the primary's slice there
 * and crashes it, and crashes a secondary once it has acknowledged a
 * checkpoint at or past n — not before. (test/failover.test.ts runs the same
 * trigger through the API in every mode and checks the outcome is unchanged.)
 */
import { describe, expect, it } from "vitest";
import { HostFaults } from "../durable-objects/host-faults.ts";
import type { SqlIdleStore } from "../durable-objects/idle-store.ts";
import type { SqlReplicaStore } from "../durable-objects/replica-store.ts";

function faults() {
  const aborts: string[] = [];
  const ctx = { abort: (reason: string) => void aborts.push(reason) } as unknown as DurableObjectState;
  const idle = { clear: () => undefined } as unknown as SqlIdleStore;
  const f = new HostFaults(ctx, { midway: null } as unknown as SqlReplicaStore, idle);
  return { f, aborts };
}

const turn = () => new Promise((r) => setTimeout(r, 5));

describe("a crash armed for an instruction count", () => {
  it("the primary may run exactly up to it, and crashes when it gets there", () => {
    const { f, aborts } = faults();
    expect(f.instructionsLeft(0)).toBe(Infinity);
    f.inject("crash", { instruction: 1000 });
    expect(f.instructionsLeft(400)).toBe(600);
    f.ran(999);
    expect(aborts).toEqual([]);
    expect(() => f.ran(1000)).toThrow(/unreachable after abort/);
    expect(aborts).toEqual(["injected crash at instruction 1000"]);
  });

  it("the secondary crashes once it acknowledged a checkpoint at or past the count, not before", async () => {
    const { f, aborts } = faults();
    f.inject("crash", { instruction: 1000 });
    f.acknowledged(999);
    await turn();
    expect(aborts).toEqual([]);
    f.acknowledged(1200);
    await turn();
    expect(aborts).toEqual(["injected crash at an instruction count"]);
    f.acknowledged(1300); // once
    await turn();
    expect(aborts).toHaveLength(1);
  });
});
