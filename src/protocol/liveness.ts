/**
 * How the witness knows a running primary is alive without pinging it.
 *
 * A running primary checks in with the witness (primary.ts, checkInDue) every
 * CHECK_IN_MS, or every heartbeat interval if that is longer — it must anyway,
 * to learn that it was fenced. While its check-ins keep coming the witness
 * does not ping it: its alarm wakes once the next check-in is an interval
 * overdue, and it pings from then on as before (witness.ts, heartbeat). So a
 * running guest's liveness costs one request a second (the check-in) and
 * about one alarm, where pinging every 200 ms cost ten (a ping and an alarm
 * each time); its primary's failure is detected within CHECK_IN_MS + the
 * interval + the timeout: 3.2 s with the defaults.
 */
export const CHECK_IN_MS = 1000;

/** How often a running primary checks in, given its heartbeat interval. */
export function checkInEveryMs(intervalMs: number): number {
  return Math.max(intervalMs, CHECK_IN_MS);
}
