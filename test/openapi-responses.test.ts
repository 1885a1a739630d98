/**
 * Real responses of every route match the schemas the OpenAPI document gives
 * them (src/api/routes.ts, src/api/responses.ts): each route is called, its
 * answer's status must be one it documents, and its body must parse with the
 * documented schema — strict objects, so a field the API sends without
 * documenting it fails here. Problems (400, 401, 404, 409, 413, 415, 426) are
 * checked the same way. (The document itself is validated on Node:
 * test/node/openapi.test.ts.)
 */
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { routes } from "../src/api/routes.ts";
import echo from "../guests/echo.s";
import hello from "../guests/hello.s";
import { call, waitFor } from "./helpers/api.ts";

type RouteName = keyof typeof routes;
const covered = new Set<RouteName>();

interface Documented {
  content?: Record<string, { schema: z.ZodType }>;
}

/** The response is one `name` documents, and its body parses with the documented schema. */
async function documented(name: RouteName, res: Response): Promise<unknown> {
  covered.add(name);
  const responses = routes[name].responses as Record<number, Documented>;
  const doc = responses[res.status];
  expect(doc, `${name}: status ${res.status} is not documented (${await res.clone().text()})`).toBeDefined();
  const type = (res.headers.get("content-type") ?? "").split(";")[0];
  if (!doc.content) {
    expect(await res.text()).toBe("");
    return null;
  }
  const media = doc.content[type];
  expect(media, `${name} ${res.status}: content-type ${type} is not documented (${Object.keys(doc.content).join(", ")})`).toBeDefined();
  if (type === "application/octet-stream") return new Uint8Array(await res.arrayBuffer());
  const body: unknown = await res.json();
  const parsed = media.schema.safeParse(body);
  expect(parsed.success, `${name} ${res.status}: ${JSON.stringify(parsed.error?.issues?.slice(0, 3))}`).toBe(true);
  return body;
}

describe("every route answers as its OpenAPI schema says", () => {
  it("on success, and with its problems", async () => {
    await documented("examples", await call("GET", "/api/examples"));
    await documented("examples", await call("GET", "/api/examples", { token: null }));

    const g = (await documented("create", await call("POST", "/api/guests", { body: { image: { asm: hello }, name: "doc" } }))) as { id: string };
    await documented("create", await call("POST", "/api/guests", { body: { image: { asm: "_start:\n  addi x1, x1\n" } } }));
    await documented("create", await call("POST", "/api/guests", { raw: "{}", headers: { "content-type": "text/plain" } }));
    await documented("create", await call("POST", "/api/guests", { raw: JSON.stringify({ image: { asm: "x".repeat(3 << 20) } }), headers: { "content-type": "application/json" } }));
    await waitFor(g.id, (s) => s.state === "halted");
    await documented("status", await call("GET", `/api/guests/${g.id}`));
    await documented("status", await call("GET", "/api/guests/g-000000000000"));
    await documented("list", await call("GET", "/api/guests"));
    await documented("console", await call("GET", `/api/guests/${g.id}/console?from=0`));
    await documented("console", await call("GET", `/api/guests/${g.id}/console?from=-1`));
    await documented("memory", await call("GET", `/api/guests/${g.id}/memory?addr=0&len=16`));
    await documented("memory", await call("GET", `/api/guests/${g.id}/memory?addr=0`));
    await documented("disk", await call("GET", `/api/guests/${g.id}/disk?sector=0&count=1`));
    await documented("pause", await call("POST", `/api/guests/${g.id}/pause`)); // halted: 409

    const p = (await documented("create", await call("POST", "/api/guests", { body: { image: { asm: echo }, paused: true } }))) as { id: string };
    await documented("step", await call("POST", `/api/guests/${p.id}/step`, { body: { instructions: 10 } }));
    await documented("step", await call("POST", `/api/guests/${p.id}/step`));
    await documented("step", await call("POST", `/api/guests/${p.id}/step`, { body: { instructions: 0 } }));
    await documented("resume", await call("POST", `/api/guests/${p.id}/resume`));
    await documented("pause", await call("POST", `/api/guests/${p.id}/pause`));
    await documented("resume", await call("POST", `/api/guests/${p.id}/resume`));
    await documented("inbound", await call("POST", `/api/guests/${p.id}/inbound`, { raw: "ping" }));
    await documented("inbound", await call("POST", `/api/guests/${p.id}/inbound`, { raw: "" }));
    await waitFor(p.id, (s) => s.counters.packetsOut >= 1);
    await documented("outbound", await call("GET", `/api/guests/${p.id}/outbound?from=0`));
    await documented("fault", await call("POST", `/api/guests/${p.id}/faults`, { body: { target: "secondary", kind: "crash", at: "after-ack" } }));
    await documented("fault", await call("POST", `/api/guests/${p.id}/faults`, { body: { target: "primary", kind: "crash", at: { instruction: 5 } } }));
    await documented("fault", await call("POST", `/api/guests/${p.id}/faults`, { body: { target: "primary", kind: "partition", at: "mid-transfer" } }));

    await documented("events", await call("GET", `/api/guests/${p.id}/events`));
    await documented("events", await call("GET", "/api/guests/g-000000000000/events", { headers: { upgrade: "websocket" } }));

    await documented("remove", await call("DELETE", `/api/guests/${p.id}`));
    await documented("remove", await call("DELETE", `/api/guests/${p.id}`));
    await documented("remove", await call("DELETE", `/api/guests/${g.id}`));

    expect([...covered].sort()).toEqual(Object.keys(routes).sort());
  });
});

describe("the API reference page, /api/docs", () => {
  it("is served with its assets by the Worker, needs no token, and allows only this origin's scripts and styles", async () => {
    const page = await call("GET", "/api/docs", { token: null });
    expect(page.status).toBe(200);
    const html = await page.text();
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe|https?:/);
    // Everything it loads is ours: no CDN.
    const srcs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(srcs.filter((s) => /^https?:|^\/\//.test(s))).toEqual([]);
    for (const s of srcs.filter((x) => x.startsWith("/api/docs/"))) {
      const res = await call("GET", s, { token: null });
      expect(res.status, s).toBe(200);
      expect((await res.text()).length).toBeGreaterThan(10);
    }
    expect(srcs).toContain("/api/docs/swagger-ui-bundle.js");
  });
});
