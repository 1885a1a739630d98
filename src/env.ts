/** The Worker's bindings (wrangler.toml). */
import type { Directory } from "../durable-objects/directory.ts";
import type { GuestHost } from "../durable-objects/guest-host.ts";
import type { GuestSwitch } from "../durable-objects/guest-switch.ts";

export interface Env {
  HOST: DurableObjectNamespace<GuestHost>;
  SWITCH: DurableObjectNamespace<GuestSwitch>;
  DIRECTORY: DurableObjectNamespace<Directory>;
  ASSETS?: Fetcher;
  /** Bearer token for the API; a secret. Unset = the API refuses everything. */
  API_TOKEN?: string;
  /**
   * Test-only (never set it in production): a secondary holds each full
   * checkpoint of a re-protection (generation ≥ 1) this many ms before it
   * applies it, so a test can restart everything inside a re-protection window.
   */
  TEST_HOLD_REPROTECTION_MS?: string;
}

type AppEnv = Env;

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Cloudflare {
    // Lets `env` from "cloudflare:workers" and "cloudflare:test" carry these bindings.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface Env extends AppEnv {}
    interface GlobalProps {
      mainModule: typeof import("./index.ts");
      durableNamespaces: "GuestHost" | "GuestSwitch" | "Directory";
    }
  }
}
