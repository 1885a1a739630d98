import { defineConfig } from "vitest/config";
import { workers } from "./vitest.workers.ts";

/** Assembly sources as text (wrangler and the workers pool do this with a [[rules]] entry). */
const assemblyAsText = {
  name: "assembly-as-text",
  transform(code: string, id: string) {
    const text = id.endsWith(".s") || id.endsWith("swagger-ui-bundle.js") || id.endsWith("swagger-ui.css");
    return text ? { code: `export default ${JSON.stringify(code)};`, map: null } : undefined;
  },
};

// Two projects: everything that needs the Worker and its Durable Objects runs
// inside workerd (the same code `wrangler dev` serves); the deterministic
// simulator (src/sim: plain TypeScript, virtual time) runs on Node, in parallel.
export default defineConfig({
  test: {
    testTimeout: 30_000,
    projects: [
      {
        plugins: [workers()],
        test: { name: "workers", include: ["test/**/*.test.ts"], exclude: ["test/sim/**", "test/node/**"], testTimeout: 30_000 },
      },
      {
        plugins: [assemblyAsText],
        test: { name: "sim", include: ["test/sim/**/*.test.ts"], environment: "node", testTimeout: 60_000 },
      },
      {
        // What needs Node rather than workerd (the OpenAPI validator compiles schemas to code).
        plugins: [assemblyAsText],
        test: { name: "node", include: ["test/node/**/*.test.ts"], environment: "node" },
      },
    ],
  },
});
