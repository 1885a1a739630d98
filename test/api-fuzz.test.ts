/**
 * Bad input, generated: no request body, query or path makes the API answer
 * anything but a success or a problem (never a 500), and none of it touches
 * a guest that already exists.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import counter from "../guests/counter.s?raw";
import { call, createGuest, status, waitFor } from "./helpers/api.ts";
import { runs } from "./helpers/fuzz.ts";

const json = fc.jsonValue({ maxDepth: 3 });
const field = fc.constantFrom("image", "mode", "memoryPages", "diskSectors", "name", "regions", "heartbeat", "epochMs", "paused", "asm", "target", "kind", "at", "instructions");
const valueish = fc.oneof(json, fc.constantFrom(-1, 0, 1, 1.5, 2 ** 31, 16385, "", "kemari", "remus", "none", "primary", "crash", "now", "weur", { asm: "nop" }));
const body = fc.oneof(json, fc.dictionary(field, valueish, { maxKeys: 5 }));
const routes = fc.constantFrom("POST /api/guests", "POST /step", "POST /faults", "POST /pause", "POST /resume", "GET /memory", "GET /disk", "GET /console", "GET /outbound");
const query = fc.dictionary(fc.constantFrom("addr", "len", "sector", "count", "from", "x"), fc.oneof(fc.integer({ min: -5, max: 1 << 30 }).map(String), fc.string({ maxLength: 6 })), { maxKeys: 3 });

describe("generated bad input", () => {
  it("is answered with success or a problem, and leaves an existing guest untouched", async () => {
    const g = await createGuest({ asm: counter });
    const before = await waitFor(g.id, (s) => s.state === "waiting" && s.devices.length === 4);
    let problems = 0;
    await fc.assert(
      fc.asyncProperty(routes, body, query, async (route, b, q) => {
        const [method, path] = route.split(" ");
        // Reads with generated queries go to the real guest; writes to one that does not exist
        // (a generated body may be a valid fault). Either way the real guest must not change.
        const target = method === "GET" ? g.id : "g-000000000001";
        const url = path.startsWith("/api") ? path : `/api/guests/${target}${path}`;
        const qs = new URLSearchParams(q).toString();
        const res = await call(method, qs ? `${url}?${qs}` : url, method === "POST" ? { raw: JSON.stringify(b), headers: { "content-type": "application/json" } } : {});
        expect(res.status, await res.clone().text()).toBeLessThan(500);
        if (res.status >= 400) {
          expect(res.headers.get("content-type")).toBe("application/problem+json");
          problems++;
        } else if (res.status === 201) {
          // A generated body that happens to be a valid guest: fine, but remove it again.
          const created = (await res.json()) as { id: string };
          await call("DELETE", `/api/guests/${created.id}`);
        } else {
          await res.body?.cancel();
        }
      }),
      { numRuns: runs(150) },
    );
    expect(problems).toBeGreaterThan(0);
    const after = await status(g.id);
    expect(after).toMatchObject({ state: "waiting", generation: before.generation, protection: "protected" });
    expect(after.counters).toEqual(before.counters);
  });
});
