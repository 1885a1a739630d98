/**
 * Test-only switches that turn known bugs back on, so the simulator's
 * mutation tests can show that its checker catches each one (a checker that
 * cannot fail is not done). All are off in every real run; only tests set them.
 */
export interface Mutations {
  /** Kemari's old design: each disk write goes to the secondary's disk at once, ahead of the checkpoint of the memory that made it (bug 1). */
  mirrorDiskAhead: boolean;
  /** Remus: a full checkpoint to a new secondary leaves out the epoch's held outputs (bug 2). */
  fullWithoutHeldOutputs: boolean;
  /** The default disk read shows the primary's live disk, writes no checkpoint covers yet (bug 3). */
  diskReadsLive: boolean;
  /** An output leaves before the secondary acknowledged the state that produced it. */
  releaseBeforeAck: boolean;
  /** A host takes a checkpoint from a primary of an older generation. */
  acceptOlderGeneration: boolean;
  /** Pipelined tap: an event's backend consumes every request in its ring, not only those its checkpoint holds. */
  pipelineUnbounded: boolean;
  /** Outputs on their way to the witness are not carried in checkpoints (a takeover can neither remake nor release them). */
  outputsNotCarried: boolean;
  /** Remus's epochs in flight: a checkpoint's pages become the next one's delta bases only once it is acknowledged (the next, taken before, is encoded against older pages than the secondary will hold). */
  deltaBaseAtAck: boolean;
  /** A pipelined checkpoint fails before its commit: the next keeps it as its delta bases (pages the secondary never got). */
  keepBasesOfFailed: boolean;
  /** A fenced primary still sends the checkpoints it had taken (or takes on the way out) to its secondary. */
  fencedPrimarySends: boolean;
  /** An idle save is kept when the guest runs on: a restart resumes it from before (packets it took, outputs it made, lost or made twice). */
  staleIdleSave: boolean;
  /** An idle save is made before the secondary holds the guest's memory and disk: the resumed primary never sends what the secondary lacks. */
  idleSaveAhead: boolean;
  /** Copy-on-write capture: a store to a page a checkpoint in flight still reads from live memory does not hand it the page first. */
  keepNothing: boolean;
  /** Liveness on check-ins: a primary that once checked in is taken for alive from then on, and never pinged again. */
  checkInsForever: boolean;
  /** The pump awaits each check-in: a primary a long round trip from its witness (after a failover) stops for it every second. */
  checkInHoldsGuest: boolean;
  /** A checkpoint's frames go out in a window from its first: a frame overtaking that first joins what a failed attempt left staged. */
  windowFromFirstFrame: boolean;
  /** A guest that halted (or crashed) shows it before any acknowledged checkpoint holds its end (its exit code, its last disk writes). */
  endBeforeAck: boolean;
  /** Pipelined tap: events wait for a checkpoint for as long as the guest runs on (coalescing over a slice that never ends). */
  coalesceUnbounded: boolean;
}

export const mutations: Mutations = {
  mirrorDiskAhead: false,
  fullWithoutHeldOutputs: false,
  diskReadsLive: false,
  releaseBeforeAck: false,
  acceptOlderGeneration: false,
  pipelineUnbounded: false,
  outputsNotCarried: false,
  deltaBaseAtAck: false,
  keepBasesOfFailed: false,
  fencedPrimarySends: false,
  staleIdleSave: false,
  idleSaveAhead: false,
  keepNothing: false,
  checkInsForever: false,
  checkInHoldsGuest: false,
  windowFromFirstFrame: false,
  endBeforeAck: false,
  coalesceUnbounded: false,
};

export type MutationName = keyof Mutations;

/** Run `fn` with one mutation switched on (and always off again after). */
export async function withMutation<T>(name: MutationName, fn: () => Promise<T>): Promise<T> {
  mutations[name] = true;
  try {
    return await fn();
  } finally {
    mutations[name] = false;
  }
}
