/**
 * The token comparison behind the API's bearer auth (hono/bearer-auth's
 * `verifyToken`, in src/api/app.ts, which also fails closed when no API_TOKEN
 * is configured): constant time, over the tokens' SHA-256 digests, so neither
 * the secret's bytes nor its length leak through timing.
 */

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

export async function tokensEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
