import { DurableObject } from "cloudflare:workers";
export class GuestHost extends DurableObject {}
export class GuestSwitch extends DurableObject {}
export class Directory extends DurableObject {}
export default {
  async fetch(): Promise<Response> {
    return new Response("ok");
  },
} satisfies ExportedHandler;
