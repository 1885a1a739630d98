/**
 * Bearer-token authentication. It fails closed: with no API_TOKEN configured
 * every protected request is refused. Tokens are compared in constant time
 * (over their SHA-256 digests, so the length of the secret leaks nothing).
 */
import type { MiddlewareHandler } from "hono";
import type { Env } from "../env.ts";
import { problem } from "./problem.ts";

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

export async function tokensEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function requireToken(): MiddlewareHandler<{ Bindings: Env }> {
  return async (c, next) => {
    const expected = c.env.API_TOKEN;
    if (!expected) return problem(401, "the API has no token configured (set the API_TOKEN secret); every request is refused");
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return problem(401, "missing 'Authorization: Bearer <token>' header");
    if (!(await tokensEqual(m[1], expected))) return problem(401, "invalid token");
    await next();
  };
}
