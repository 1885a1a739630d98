/**
 * How many instructions the next slice may run: a time budget, turned into
 * instructions by the rate measured between yields.
 *
 * Why not a fixed count: every slice ends in a yield (a round trip to the
 * switch, so queued requests get in), and a fixed count small enough for a
 * slow moment is wasteful in a fast one — at 150k instructions a slice, the
 * yields alone took a third of a compute-bound guest's time. And why not a
 * clock: inside workerd the clock stands still while code runs and moves
 * only at I/O. So the rate is measured from one slice's start to the next
 * (the slice, its yield and whatever else ran meanwhile — an underestimate,
 * which errs toward shorter slices), smoothed, and the next slice runs
 * about the time it is given (the host's: src/protocol/host.ts, pump).
 */

/** The rate assumed before any measurement (instructions per ms): a cautious one. */
const INITIAL_RATE = 50_000;
/** A slice's length when nothing asks for a shorter one (ms): short enough that requests wait little for the guest. */
export const SLICE_MS = 10;
/** The shortest slice a modelled arrival can ask for (ms). */
export const MIN_SLICE_MS = 0.5;
/** Bounds on one slice, whatever the measurement says. */
const MIN_SLICE = 20_000;
const MAX_SLICE = 4_000_000;
/** A measurement shorter than this is the clock's coarseness, not a rate. */
const MIN_SAMPLE_MS = 1;

export class SliceBudget {
  private rate = INITIAL_RATE;
  private from: { at: number; instret: number } | null = null;

  /** The next slice's instructions, to run about `ms`, given the guest's instruction count and the time now. */
  next(instret: number, now: number, ms: number): number {
    const from = this.from;
    if (from) {
      const took = now - from.at;
      const ran = instret - from.instret;
      if (took >= MIN_SAMPLE_MS && ran > 0) {
        // Smoothed, so one slice that waited on a checkpoint does not halve the next.
        this.rate = 0.5 * this.rate + 0.5 * (ran / took);
        this.from = { at: now, instret };
      } else if (took < 0 || ran < 0) this.from = { at: now, instret };
    } else this.from = { at: now, instret };
    return Math.round(Math.min(MAX_SLICE, Math.max(MIN_SLICE, this.rate * ms)));
  }

  /** The guest starts running again after a stop: the time it spent stopped is not its rate (the rate learnt so far is kept). */
  restart(): void {
    this.from = null;
  }
}
