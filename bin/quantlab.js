#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/src/cli (built by `npm run build`, which `npm ci` runs via `prepare`).
import("../dist/src/cli/main.js").then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`quantlab: ${err && err.message ? err.message : String(err)}\n`);
  process.exit(1);
});
