/**
 * A guest's summary in the directory (what the list shows): its mode,
 * generation and protection, and a coarse state — running (also waiting,
 * paused, at a breakpoint), halted or crashed. Coarse on purpose: the switch
 * reports a change to the directory only when one of these changes
 * (`SummaryReporter`), never on a running/waiting flip.
 */
import type { GuestStatus } from "../host/status.ts";

/** What the list shows of a guest. `state` is coarse: running (also waiting, paused, at a breakpoint), halted or crashed. */
export interface GuestSummary {
  id: string;
  name: string;
  createdAt: number;
  mode: string | null;
  generation: number | null;
  protection: string | null;
  state: "running" | "halted" | "crashed" | null;
}

export type SummaryChange = Pick<GuestSummary, "mode" | "generation" | "protection" | "state">;

export function summaryOf(s: Pick<GuestStatus, "mode" | "generation" | "protection" | "state">): SummaryChange {
  return { mode: s.mode, generation: s.generation, protection: s.protection, state: s.state === "halted" || s.state === "crashed" ? s.state : "running" };
}

/** Sends a guest's summary on when it changes; a send that fails is retried with the next change (or the next status). */
export class SummaryReporter {
  private sent: string | null = null;

  constructor(private readonly send: (change: SummaryChange) => Promise<void>) {}

  seen(s: Pick<GuestStatus, "mode" | "generation" | "protection" | "state">): void {
    const change = summaryOf(s);
    const key = JSON.stringify(change);
    if (key === this.sent) return;
    this.sent = key;
    this.send(change).catch(() => {
      if (this.sent === key) this.sent = null;
    });
  }
}
