// `quantlab bench`: JSON figures for quantlab alone and next to llama.cpp (node-llama-cpp, a
// devDependency present in this checkout), on llama.cpp's own stories260K GGUF; errors are one line.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { dataPath } from "../../../src/io/node/data.js";
import { quantlab, expectOneLineError } from "../helpers-cli.js";

const model = dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf");

interface Figures { prefill: { median: number; best: number }; decode: { median: number; best: number; cpuMsPerToken: number }; runs: number }

function checkFigures(f: Figures, reps: number, genTokens: number, what: string): void {
  assert.equal(f.runs, reps, what);
  for (const k of ["prefill", "decode"] as const) {
    assert.ok(Number.isFinite(f[k].median) && f[k].median > 0, `${what} ${k} median ${f[k].median}`);
    assert.ok(f[k].best >= f[k].median, `${what} ${k}: best ${f[k].best} < median ${f[k].median}`);
  }
  // process CPU time per decoded token: measured (> 0), and bounded by the wall time of the slowest run
  // times the machine's threads that could have run it (every thread of the process counts), plus the
  // accounting granularity: getrusage may charge CPU time per scheduler tick (4 ms at HZ=250) to each of the
  // process's busy threads (main + pool workers + V8's), which over a decode of a few ms is not negligible
  const c = f.decode.cpuMsPerToken;
  assert.ok(Number.isFinite(c) && c > 0, `${what} decode CPU ms/token ${c}`);
  const tickSlack = (4 * 4) / genTokens;
  assert.ok(c <= (1000 / Math.min(f.decode.median, f.decode.best)) * availableParallelism() * 1.5 + tickSlack, `${what} decode CPU ${c} ms/token exceeds wall × cores`);
}

describe("quantlab bench", () => {
  test("--json: quantlab's prefill and decode tokens/s on the default (wasm) backend, and on ref", () => {
    for (const backend of [[], ["--backend", "ref"]]) {
      const r = quantlab("bench", model, "--prompt-tokens", "12", "--gen-tokens", "5", "--reps", "2", "--json", ...backend);
      assert.equal(r.status, 0, r.stderr);
      const o = JSON.parse(r.stdout) as { quantlab: Figures & { backend: string; weightBytes: number | null }; promptTokens: number; genTokens: number; llamacpp?: unknown };
      assert.equal(o.promptTokens, 12);
      assert.equal(o.genTokens, 5);
      assert.equal(o.llamacpp, undefined);
      assert.match(o.quantlab.backend, backend.length ? /^ref$/ : /^wasm-/);
      if (!backend.length) assert.ok(o.quantlab.weightBytes! > 0);
      checkFigures(o.quantlab, 2, 5, o.quantlab.backend);
    }
  });

  test("--vs-llamacpp: llama.cpp's figures on the same file and the ratio of medians", () => {
    const r = quantlab("bench", model, "--prompt-tokens", "16", "--gen-tokens", "6", "--reps", "1", "--vs-llamacpp", "--json");
    assert.equal(r.status, 0, r.stderr);
    const o = JSON.parse(r.stdout) as { quantlab: Figures; llamacpp: Figures & { version: string }; ratio: { prefill: number; decode: number; decodeCpu: number } };
    checkFigures(o.quantlab, 1, 6, "quantlab");
    checkFigures(o.llamacpp, 1, 6, "llama.cpp");
    assert.match(o.llamacpp.version, /^node-llama-cpp \d+\.\d+\.\d+/);
    assert.ok(Math.abs(o.ratio.decode - o.quantlab.decode.median / o.llamacpp.decode.median) < 1e-9);
    assert.ok(Math.abs(o.ratio.prefill - o.quantlab.prefill.median / o.llamacpp.prefill.median) < 1e-9);
    assert.ok(Math.abs(o.ratio.decodeCpu - o.llamacpp.decode.cpuMsPerToken / o.quantlab.decode.cpuMsPerToken) < 1e-9);
  });

  test("plain output names both engines and the ratio", () => {
    const r = quantlab("bench", model, "--prompt-tokens", "8", "--gen-tokens", "3", "--reps", "1", "--vs-llamacpp");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^stories260K-Q4_K_M\.gguf: 8-token prefill, 3-token decode, 1 thread\(s\), median of 1\nquantlab \(wasm-\w+\): +prefill [\d.]+ tok\/s +decode [\d.]+ tok\/s \(CPU [\d.]+ ms\/token\)\nllama\.cpp \(node-llama-cpp [\d.]+\): +prefill [\d.]+ tok\/s +decode [\d.]+ tok\/s \(CPU [\d.]+ ms\/token\)\nratio quantlab \/ llama\.cpp: +prefill [\d.]+× +decode [\d.]+× \(by CPU time [\d.]+×\)\n$/);
  });

  test("errors are one line", () => {
    expectOneLineError(quantlab("bench", "/nonexistent/model.gguf"), /\/nonexistent\/model\.gguf: no such file/);
    expectOneLineError(quantlab("bench", model, "--reps", "0"), /option --reps: expected a positive integer/, 2);
  });
});
