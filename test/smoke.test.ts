import { exports } from "cloudflare:workers";
import { expect, it } from "vitest";
import hello from "../guests/hello.s?raw";
it("serves", async () => {
  const r = await exports.default.fetch("http://x/api/x");
  expect(await r.text()).toBe("ok");
  expect(hello).toContain("_start");
});
