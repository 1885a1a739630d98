/**
 * The one way this project runs vitest: inside workerd, against the same
 * Worker and Durable Objects that `wrangler dev` serves, with the test token.
 * The configs (tests, bench, fuzz, soak) differ only in what they include and
 * in extra bindings.
 */
import { cloudflareTest } from "@cloudflare/vitest-plugin";

export function workers(bindings: Record<string, string> = {}) {
  return cloudflareTest({
    wrangler: { configPath: "./wrangler.toml" },
    miniflare: { bindings: { API_TOKEN: "test-token", ...bindings } },
  });
}
