/** Guest sources are bundled as text (wrangler.toml `[[rules]] type = "Text"`). */
declare module "*.s" {
  const source: string;
  export default source;
}

/** Swagger UI's script and stylesheet, bundled as text for /api/docs (wrangler.toml `[[rules]]`). */
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const source: string;
  export default source;
}
declare module "swagger-ui-dist/swagger-ui.css" {
  const source: string;
  export default source;
}

/** Built guest ELF files, bundled as bytes (wrangler.toml `[[rules]] type = "Data"`). */
declare module "*.elf" {
  const bytes: ArrayBuffer;
  export default bytes;
}
