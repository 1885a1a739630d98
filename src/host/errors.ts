/**
 * Errors a host or switch reports to the API. Only an error's message crosses
 * Durable Object RPC intact, so the code travels at its start ("not-found: …")
 * and the API turns it back into an HTTP problem.
 */
export const ERROR_STATUS = {
  "not-found": 404,
  conflict: 409,
  lost: 410,
  "bad-request": 400,
} as const;
export type GuestErrorCode = keyof typeof ERROR_STATUS;

export class GuestError extends Error {
  constructor(
    readonly code: GuestErrorCode,
    detail: string,
    /** The request field at fault, if one is. */
    field?: string,
  ) {
    super(`${code}${field ? `[${field}]` : ""}: ${detail}`);
    this.name = "GuestError";
  }
}

export interface ParsedGuestError {
  code: GuestErrorCode;
  detail: string;
  field?: string;
}

/** Recover a GuestError that crossed RPC, or null if the error is something else. */
export function parseGuestError(e: unknown): ParsedGuestError | null {
  const message = e instanceof Error ? e.message : String(e);
  const m = /(not-found|conflict|lost|bad-request)(?:\[([\w.]+)\])?: ([\s\S]*)$/.exec(message);
  if (!m) return null;
  return { code: m[1] as GuestErrorCode, detail: m[3], ...(m[2] ? { field: m[2] } : {}) };
}
