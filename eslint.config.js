import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", ".wrangler/", "test-artifacts/", "bench/results/", "public/vendor/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: "module" },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // The interpreter's dense switch uses labelled breaks and one-line cases on purpose.
      "no-labels": "off",
    },
  },
  {
    files: ["scripts/**/*.mjs", "bin/**/*.mjs", "public/**/*.js"],
    languageOptions: {
      globals: { console: "readonly", process: "readonly", fetch: "readonly", URL: "readonly", setTimeout: "readonly", clearTimeout: "readonly", document: "readonly", window: "readonly", performance: "readonly", TextEncoder: "readonly", TextDecoder: "readonly", Response: "readonly", Request: "readonly", requestAnimationFrame: "readonly", atob: "readonly", btoa: "readonly", localStorage: "readonly", EventSource: "readonly", WebSocket: "readonly", Buffer: "readonly", AbortController: "readonly" },
    },
  },
);
