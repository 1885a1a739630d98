/**
 * Errors a host or switch reports to the API (not found, conflict, …).
 *
 * They cross Durable Object RPC as values, not exceptions: an RPC method
 * returns an `Outcome`, and the caller `unwrap`s it, re-throwing a local
 * GuestError that the API turns into a problem response. (A thrown error
 * would arrive with only its message, and be logged as uncaught.)
 */
export const ERROR_STATUS = {
  "not-found": 404,
  conflict: 409,
  lost: 410,
  "bad-request": 400,
  /** The guest is between hosts (failing over) or its host is cut off: retry. */
  unavailable: 503,
} as const;
export type GuestErrorCode = keyof typeof ERROR_STATUS;

export class GuestError extends Error {
  constructor(
    readonly code: GuestErrorCode,
    readonly detail: string,
    /** The request field at fault, if one is. */
    readonly field?: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = "GuestError";
  }
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: GuestErrorCode; detail: string; field?: string };

/** Run `fn`, turning a GuestError into a failed Outcome; anything else still throws. */
export async function outcome<T>(fn: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    if (!(e instanceof GuestError)) throw e;
    return { ok: false, code: e.code, detail: e.detail, ...(e.field ? { field: e.field } : {}) };
  }
}

export function unwrap<T>(o: Outcome<T>): T {
  if (o.ok) return o.value;
  throw new GuestError(o.code, o.detail, o.field);
}
