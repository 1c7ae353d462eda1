/**
 * The arrows of ../shared/DESIGN.md, checked on the source tree: each layer imports only the layers it may
 * use, no module is imported for its side effects, Node APIs appear only in the adapters, and no test
 * imports library code from src/cli (tests mirror src/ and test the library where it lives).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(".");

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Every `import … from "x"` / `import "x"` / `export … from "x"` of a file, with whether it is side-effect only. */
function imports(file: string): { spec: string; sideEffect: boolean }[] {
  const src = readFileSync(file, "utf8");
  const out: { spec: string; sideEffect: boolean }[] = [];
  for (const m of src.matchAll(/^\s*(import|export)\s+(?:type\s+)?([^;]*?)\s*from\s+"([^"]+)"/gms)) out.push({ spec: m[3]!, sideEffect: false });
  for (const m of src.matchAll(/^\s*import\s+"([^"]+)"/gm)) out.push({ spec: m[1]!, sideEffect: true });
  for (const m of src.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)) out.push({ spec: m[1]!, sideEffect: false });
  return out;
}

const LAYER_OF = (file: string): string => relative(join(ROOT, "src"), file).split("/")[0]!;

/** What each src/ layer may import (besides itself), from DESIGN.md's list. */
const ALLOWED: Record<string, readonly string[]> = {
  core: [],
  formats: ["core"],
  quant: ["core", "formats"],
  ggml: ["core", "quant"],
  kernels: ["core", "ggml", "quant"],
  model: ["core", "kernels", "formats", "quant", "ggml"],
  algos: ["core", "formats", "quant", "ggml", "kernels", "model", "eval"],
  io: ["core", "ggml", "model", "quant", "kernels", "formats", "algos"],
  eval: ["core", "model", "quant", "kernels", "io", "formats"],
  report: ["core", "formats", "quant", "algos", "ggml", "kernels", "model", "io", "eval"],
  cli: ["core", "formats", "quant", "algos", "ggml", "kernels", "model", "io", "eval", "report"],
};

/** Single files allowed one more layer, with the reason. */
const FILE_EXTRA: Record<string, readonly string[]> = {
  // the compare tables quantize each row (specs and llama-quantize presets): the one eval module above
  // algos and ggml's preset table (algos uses eval's windows and KLD)
  "src/eval/compare.ts": ["algos", "ggml"],
};

const srcFiles = walk(join(ROOT, "src"));

test("src/ layers import only the layers DESIGN.md allows (kernels never import model)", () => {
  const bad: string[] = [];
  for (const f of srcFiles) {
    const layer = LAYER_OF(f);
    const allowed = ALLOWED[layer];
    assert.ok(allowed, `unknown layer ${layer} (${f})`);
    for (const { spec } of imports(f)) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(join(f, ".."), spec);
      const rel = relative(join(ROOT, "src"), target);
      if (rel.startsWith("..")) {
        if (!relative(ROOT, target).startsWith("assembly/abi")) bad.push(`${relative(ROOT, f)} → ${spec} (outside src/)`);
        continue;
      }
      const to = rel.split("/")[0]!;
      if (to !== layer && !allowed.includes(to) && !(FILE_EXTRA[relative(ROOT, f)] ?? []).includes(to)) bad.push(`${relative(ROOT, f)} (${layer}) → ${spec} (${to})`);
    }
  }
  assert.deepEqual(bad, []);
});

test("no module is imported for its side effects", () => {
  const files = [...srcFiles, ...walk(join(ROOT, "test")), ...walk(join(ROOT, "bench"))];
  const bad = files.flatMap((f) => imports(f).filter((i) => i.sideEffect).map((i) => `${relative(ROOT, f)}: import "${i.spec}"`));
  assert.deepEqual(bad, []);
});

test("Node APIs only in io/node, cli and the worker-pool adapters (core library code is isomorphic)", () => {
  const adapters = /^src\/(io\/node\/|cli\/|kernels\/wasm\/(pool-node|worker-node)\.ts$)/;
  const bad: string[] = [];
  for (const f of srcFiles) {
    const rel = relative(ROOT, f);
    if (adapters.test(rel)) continue;
    for (const { spec } of imports(f)) if (spec.startsWith("node:")) bad.push(`${rel}: ${spec}`);
  }
  assert.deepEqual(bad, []);
});

test("tests import library code from where it lives, never from src/cli (except the CLI's own entry)", () => {
  const bad: string[] = [];
  for (const f of walk(join(ROOT, "test"))) {
    for (const { spec } of imports(f)) {
      if (spec.includes("src/cli/") && !spec.endsWith("src/cli/main.js")) bad.push(`${relative(ROOT, f)}: ${spec}`);
    }
  }
  assert.deepEqual(bad, []);
});

test("the browser lab (web/src) runs the library's isomorphic code: no Node API, no Node adapter, no CLI", () => {
  const bad: string[] = [];
  const nodeOnly = /^src\/(io\/node\/|cli\/|kernels\/wasm\/(pool-node|worker-node)\.ts$)/;
  const files = walk(join(ROOT, "web", "src"));
  assert.ok(files.length > 0, "web/src has no TypeScript files");
  for (const f of files) {
    for (const { spec } of imports(f)) {
      if (spec.startsWith("node:")) bad.push(`${relative(ROOT, f)}: ${spec}`);
      if (!spec.startsWith(".")) continue;
      const target = relative(ROOT, resolve(join(f, ".."), spec)).replace(/\.js$/, ".ts");
      if (nodeOnly.test(target)) bad.push(`${relative(ROOT, f)}: ${spec}`);
    }
  }
  assert.deepEqual(bad, []);
});
