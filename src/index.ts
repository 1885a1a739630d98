/** The Worker: the API under /api, the dashboard as static assets, and the Durable Object classes. */
import { createApp } from "./api/app.ts";
import type { Env } from "./env.ts";

export { Directory } from "../durable-objects/directory.ts";
export { GuestHost } from "../durable-objects/guest-host.ts";
export { GuestSwitch } from "../durable-objects/guest-switch.ts";

const app = createApp();

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
