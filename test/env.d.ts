/// <reference types="vite/client" />
import "../src/env.ts";
