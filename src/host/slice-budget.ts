/**
 * How many instructions the next slice may run: a time budget, turned into
 * instructions by the rate the guest was measured to run at.
 *
 * Why not a fixed count: every slice ends in a yield (a timer turn, so
 * queued requests get in), and a fixed count small enough for a
 * slow moment is wasteful in a fast one — at 150k instructions a slice, the
 * yields alone took a third of a compute-bound guest's time. And why not
 * read a clock mid-slice: deployed, workerd's clock stands still while code
 * runs and moves only at I/O. So the rate is measured inside slices where
 * the clock moves while code runs (locally), from whole cycles where it
 * does not (see `ran`), smoothed, and the next slice runs about the time it
 * is given (the host's: src/protocol/host.ts, pump).
 */

/** The rate assumed before any measurement (instructions per ms): a cautious one, and the floor of an estimate from whole cycles. */
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
/** With a clock that stands still during slices, estimate from whole cycles once this much time has passed. */
const CYCLE_SAMPLE_MS = 50;

export class SliceBudget {
  private rate = INITIAL_RATE;
  /** Time and instructions inside slices since the last sample. */
  private busyMs = 0;
  private work = 0;
  private slice: { at: number; instret: number } | null = null;
  /** The start of the current run of cycles (slice + yield), for a clock that stands still in slices. */
  private cycle: { at: number; instret: number } | null = null;

  /** The next slice's instructions, to run about `ms`, given the guest's instruction count and the time now. */
  next(instret: number, now: number, ms: number): number {
    this.slice = { at: now, instret };
    this.cycle ??= { at: now, instret };
    return Math.round(Math.min(MAX_SLICE, Math.max(MIN_SLICE, this.rate * ms)));
  }

  /**
   * The slice ended. Its own time is the measure where the clock moves while
   * code runs (locally); where it stands still until I/O (deployed), slices
   * read as taking no time, and the rate comes from whole cycles instead —
   * slice and yield together, an underestimate, so it never goes below the
   * cautious rate (or slices would shrink, yields grow, and the estimate fall
   * further).
   */
  ran(instret: number, now: number): void {
    const s = this.slice;
    if (!s || now < s.at || instret < s.instret) return;
    this.busyMs += now - s.at;
    this.work += instret - s.instret;
    if (this.busyMs >= MIN_SAMPLE_MS) {
      this.sample(this.work / this.busyMs);
      this.busyMs = 0;
      this.work = 0;
      this.cycle = null;
      return;
    }
    const c = this.cycle;
    if (c && now - c.at >= CYCLE_SAMPLE_MS && instret > c.instret) {
      this.sample(Math.max(INITIAL_RATE, (instret - c.instret) / (now - c.at)));
      this.cycle = null;
    }
  }

  /** Smoothed, so one slice that waited on a checkpoint does not halve the next. */
  private sample(rate: number): void {
    this.rate = 0.5 * this.rate + 0.5 * rate;
  }

  /** The guest starts running again after a stop: the time it spent stopped is not its rate (the rate learnt so far is kept). */
  restart(): void {
    this.slice = null;
    this.cycle = null;
    this.busyMs = 0;
    this.work = 0;
  }
}
