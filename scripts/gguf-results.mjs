// Regenerates the tables of docs/gguf-results.md: for stories260K and stories3M, every llama-quantize
// preset quantized by quantlab (and, for stories3M, Q4_K_M / IQ4_XS with an importance matrix from
// tinystories/calib.txt), plus every file llama.cpp wrote in shared/data/ggml/<model>/: bits per weight,
// file size, perplexity and mean KLD against the F32 model on tinystories/eval.txt (windows of --ctx).
//
// Usage: npm run build:ts && node scripts/gguf-results.mjs [--tokens 10200] [--ctx 256] [--backend ref]
//                                                           [--models stories260K,stories3M] [--out dir]
// Prints the markdown tables on stdout (and progress on stderr). Everything goes through the CLI
// (`quantlab quantize --type`, `eval --save-logits`, `kld`), so the figures are what a user gets.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const tokens = opt("tokens", "10200");
const ctx = opt("ctx", "256");
const backend = opt("backend", "ref");
const models = opt("models", "stories260K,stories3M").split(",");
const out = opt("out", "/tmp/quantlab-gguf-results");
const data = process.env.QUANTLAB_DATA ?? join(process.cwd(), "..", "shared", "data");
const tok = join(data, "stories260K", "tok512.bin");
const evalText = join(data, "tinystories", "eval.txt");
const calib = join(data, "tinystories", "calib.txt");
mkdirSync(out, { recursive: true });

const PRESETS = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0", "IQ4_XS", "Q3_K_M", "Q3_K_S", "Q2_K", "TQ2_0"];

function ql(argv) {
  const t0 = Date.now();
  const r = execFileSync(process.execPath, ["bin/quantlab.js", ...argv, "--json"], { encoding: "utf8", maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "inherit"] });
  process.stderr.write(`  ${argv.slice(0, 3).join(" ")} … ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  return JSON.parse(r);
}

function measure(base, logits, file) {
  const info = ql(["info", file]);
  const k = ql(["kld", logits, file, "--tokenizer", tok, "--backend", backend]);
  return { bpw: info.totals.bitsPerWeight, bytes: statSync(file).size, ppl: k.pplOther, kld: k.meanKld, top1: k.top1 };
}

const lines = [];
for (const model of models) {
  const src = model === "stories260K" ? join(data, "stories260K", "stories260K.bin") : join(data, "stories3M", "stories3M.bin");
  const f32gguf = join(data, "ggml", model, `${model}-F32.gguf`);
  const logits = join(out, `${model}-base.qlgt`);
  process.stderr.write(`${model}: base logits\n`);
  const base = ql(["eval", src, "--text", evalText, "--ctx", ctx, "--max-tokens", tokens, "--tokenizer", tok, "--save-logits", logits, "--backend", backend]);
  const rows = [];
  // ours: from llama.cpp's own F32 conversion (same tensors and names as its quantized files)
  const imatrixFile = join(out, `${model}-imatrix.gguf`);
  for (const preset of PRESETS) {
    const file = join(out, `${model}-${preset}-quantlab.gguf`);
    const q = ql(["quantize", f32gguf, "--type", preset, "-o", file, "--tokenizer", tok]);
    rows.push({ who: "quantlab", preset, fallbacks: q.fallbacks.length, ...measure(src, logits, file) });
  }
  if (model === "stories3M") {
    for (const preset of ["Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K"]) {
      const file = join(out, `${model}-${preset}-imat-quantlab.gguf`);
      const im = existsSync(imatrixFile) ? ["--imatrix", imatrixFile] : ["--imatrix", calib, "--imatrix-ctx", "256", "--imatrix-out", imatrixFile, "--backend", "wasm"];
      const q = ql(["quantize", f32gguf, "--type", preset, "-o", file, "--tokenizer", tok, ...im]);
      rows.push({ who: "quantlab", preset: `${preset} + imatrix`, fallbacks: q.fallbacks.length, ...measure(src, logits, file) });
    }
    // GPTQ codes on llama.cpp's scales: imatrix and input Hessians from the first 60 chunks of calib.txt
    const fileG = join(out, `${model}-Q4_K_M-imat-gptq-quantlab.gguf`);
    ql(["quantize", f32gguf, "--type", "Q4_K_M", "-o", fileG, "--tokenizer", tok, "--imatrix", calib, "--imatrix-ctx", "256", "--imatrix-chunks", "60", "--gptq", "--backend", "wasm"]);
    rows.push({ who: "quantlab", preset: "Q4_K_M + imatrix + GPTQ", fallbacks: 0, ...measure(src, logits, fileG) });
  }
  for (const f of readdirSync(join(data, "ggml", model)).filter((x) => x.endsWith(".gguf") && !x.endsWith("-F32.gguf")).sort()) {
    const preset = f.replace(`${model}-`, "").replace(".gguf", "").replace("-imat", " + imatrix");
    rows.push({ who: "llama.cpp", preset, fallbacks: null, ...measure(src, logits, join(data, "ggml", model, f)) });
  }
  lines.push(`### ${model} (ppl of the F32 model ${base.ppl.toFixed(4)}; ${base.tokens} tokens, ${base.windows ?? "?"} windows of ctx ${ctx}, backend ${backend})`, "");
  lines.push("| preset | written by | bits/weight | file bytes | PPL | mean KLD vs F32 | top-1 agreement |", "|---|---|---|---|---|---|---|");
  const order = (p) => p.replace(/ \+ .*/, "");
  rows.sort((a, b) => PRESETS.indexOf(order(a.preset)) - PRESETS.indexOf(order(b.preset)) || a.preset.localeCompare(b.preset) || a.who.localeCompare(b.who));
  for (const r of rows) {
    lines.push(`| ${r.preset} | ${r.who} | ${r.bpw.toFixed(3)} | ${r.bytes.toLocaleString("en-US")} | ${r.ppl.toFixed(4)} | ${r.kld.toFixed(6)} | ${(100 * r.top1).toFixed(2)}% |`);
  }
  lines.push("");
}
process.stdout.write(lines.join("\n") + "\n");
