/**
 * RFC 9457 problem details. Every error the API returns is one of these, with
 * the request field (or source line) at fault when there is one.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The request field at fault, as a dotted path ("image.asm", "memoryPages"). */
  field?: string;
  /** For assembly errors: where in the source. */
  line?: number;
  column?: number;
  expected?: string;
  /** For ELF errors: the byte offset of the field at fault. */
  offset?: number;
  /** Every validation issue, when there are several. */
  errors?: { field: string; message: string }[];
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  426: "Upgrade Required",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** The statuses the API answers with: each has its title (a test checks every one). */
export const PROBLEM_STATUSES = Object.keys(TITLES).map(Number);

export function problem(status: number, detail: string, extra: Partial<Problem> = {}, more: Record<string, string> = {}): Response {
  const body: Problem = {
    type: `https://kemari.dev/problems/${status}`,
    title: TITLES[status] ?? `HTTP ${status}`,
    status,
    detail,
    ...extra,
  };
  const headers: Record<string, string> = { "content-type": "application/problem+json", ...more };
  if (status === 401) headers["www-authenticate"] = 'Bearer realm="kemari"';
  return new Response(JSON.stringify(body), { status, headers });
}
