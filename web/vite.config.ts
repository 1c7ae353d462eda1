// Vite build of the browser lab: web/ → dist/web/ (rebuilt by `npm run build`, never committed).
// Workers are ES modules so the lab worker can itself start the kernel pool's workers (pool-worker.ts).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "./",
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // vega + vega-lite and the library are one page's worth of code; there is nothing to split
    chunkSizeWarningLimit: 4096,
  },
  worker: { format: "es" },
  server: {
    // `vite --config web/vite.config.ts` for development: the same isolation `quantlab lab` serves
    headers: { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" },
  },
});
