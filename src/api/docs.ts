/**
 * The API reference page, `/api/docs`: Swagger UI (swagger-ui-dist from npm)
 * over the generated document, `/api/openapi.json`. Everything it loads is
 * served by this Worker — the page, Swagger UI's script and stylesheet (text
 * modules, bundled at build time), and a small start script — so it works
 * offline and under a CSP that allows only this origin: no CDN, no web fonts
 * (Swagger UI uses the system's), no inline script. Like the document it
 * needs no token; its Authorize button asks for one to try requests.
 */
import type { Hono } from "hono";
import bundle from "swagger-ui-dist/swagger-ui-bundle.js";
import css from "swagger-ui-dist/swagger-ui.css";

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kemari on Durable Objects: API reference</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<p><a href="/">← the dashboard</a></p>
<div id="ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/start.js"></script>
</body>
</html>
`;

const START = `window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#ui",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
`;

/** The page's own policy: scripts and styles from this origin only (the API's JSON allows nothing at all). */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

function serve(body: string, type: string): Response {
  return new Response(body, {
    headers: {
      "content-type": type,
      "content-security-policy": CSP,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
      "cache-control": type.startsWith("text/html") ? "no-cache" : "public, max-age=86400",
    },
  });
}

/** The page and its assets: public, and with their own security headers. */
export const DOC_PATHS = new Set(["/api/docs", "/api/docs/swagger-ui.css", "/api/docs/swagger-ui-bundle.js", "/api/docs/start.js"]);

/** Mount the page and its assets (before the token check: they are public). */
export function mountDocs<E extends object>(app: Hono<E>): void {
  app.get("/api/docs", () => serve(PAGE, "text/html; charset=utf-8"));
  app.get("/api/docs/swagger-ui.css", () => serve(css, "text/css; charset=utf-8"));
  app.get("/api/docs/swagger-ui-bundle.js", () => serve(bundle, "text/javascript; charset=utf-8"));
  app.get("/api/docs/start.js", () => serve(START, "text/javascript; charset=utf-8"));
}
