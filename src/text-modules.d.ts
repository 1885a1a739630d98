/** Guest sources are bundled as text (wrangler.toml `[[rules]] type = "Text"`). */
declare module "*.s" {
  const source: string;
  export default source;
}
