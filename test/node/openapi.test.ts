/**
 * The OpenAPI document the API serves (generated from the route declarations
 * in src/api/routes.ts) is a valid OpenAPI 3.1 document, by an independent
 * validator from npm (@seriousme/openapi-schema-validator, the official JSON
 * schemas of the specification). It runs on Node: the validator compiles
 * schemas to code, which workerd does not allow.
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import { routes } from "../../src/api/routes.ts";

async function served(): Promise<Record<string, unknown> & { paths: Record<string, Record<string, unknown>> }> {
  const res = await createApp().request("/api/openapi.json", {}, {});
  expect(res.status).toBe(200);
  return (await res.json()) as never;
}

describe("the OpenAPI document", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const doc = await served();
    const result = await new Validator().validate(doc);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 1)?.slice(0, 2000)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
    // The validator can fail: a response that is not an object is refused.
    const broken = { ...doc, paths: { ...doc.paths, "/broken": { get: { responses: { 200: 5 } } } } };
    expect((await new Validator().validate(broken)).valid).toBe(false);
  });

  it("documents every declared route with its responses, and nothing else", async () => {
    const doc = await served();
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)).sort();
    const declared = Object.values(routes).map((r) => `${r.method} ${r.path}`).sort();
    expect(documented).toEqual(declared);
    for (const r of Object.values(routes)) {
      const op = doc.paths[r.path][r.method] as { responses: Record<string, unknown> };
      expect(Object.keys(op.responses).sort()).toEqual(Object.keys(r.responses).sort());
    }
  });

  it("says which routes need the token", async () => {
    const doc = await served();
    const events = doc.paths["/api/guests/{id}/events"].get as { security?: unknown };
    const status = doc.paths["/api/guests/{id}"].get as { security?: unknown };
    expect(events.security).toBeUndefined();
    expect(status.security).toEqual([{ bearer: [] }]);
    expect((doc.components as { securitySchemes: unknown }).securitySchemes).toEqual({ bearer: { type: "http", scheme: "bearer" } });
  });
});
