// The hostile inputs of issue 14 through the real CLI, with wall time and peak RSS (docs/robustness.md).
// Usage: node scripts/hostile-cases.mjs [path/to/bin/quantlab.js]   (after npm run build; needs /usr/bin/time)
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { GgufWriter, MemorySink, openGguf, GgufValueType } from "../dist/src/io/gguf.js";
import { BufferSource } from "../dist/src/io/source.js";
import { loadModel } from "../dist/src/io/node/load.js";
import { saveHfDir } from "../dist/src/io/node/hf-file.js";

const BIN = process.argv[2] ?? new URL("../bin/quantlab.js", import.meta.url).pathname;
const D = process.env.QUANTLAB_DATA ?? new URL("../../shared/data", import.meta.url).pathname;
const G260 = join(D, "ggml", "stories260K", "stories260K-F32.gguf");
const TEXT = join(D, "tinystories", "eval.txt");
const dir = mkdtempSync(join(tmpdir(), "ql-cases-"));

async function gguf(name, edit, patch) {
  const f = await openGguf(new BufferSource("in", new Uint8Array(readFileSync(G260))));
  const md = new Map(f.metadata);
  edit?.(md);
  const sink = new MemorySink();
  const w = new GgufWriter(sink);
  for (const [k, v] of md) w.setKV(k, v);
  for (const t of f.tensors) w.addTensor(t);
  await w.writeHeader();
  for (const t of f.tensors) {
    const b = (await f.readTensorBytes(t)).slice();
    patch?.(t.name, b);
    await w.writeTensorData(t.name, b);
  }
  w.finish();
  writeFileSync(join(dir, name), sink.bytes());
  return join(dir, name);
}
const src = await loadModel(join(D, "stories260K", "stories260K.bin"));
const hf = join(dir, "hf");
await saveHfDir(src, hf);
function hfWith(name, file, edit) {
  const d = join(dir, name);
  cpSync(hf, d, { recursive: true });
  const j = JSON.parse(readFileSync(join(d, file), "utf8"));
  edit(j);
  writeFileSync(join(d, file), JSON.stringify(j));
  return d;
}
const nan = (name, b) => { if (name === "blk.1.ffn_up.weight") new DataView(b.buffer).setFloat32(4 * 1234, NaN, true); };

const inputs = [
  ["GGUF llama.block_count = 4194304", await gguf("layers.gguf", (md) => md.set("llama.block_count", { type: GgufValueType.UINT32, value: 4194304 }))],
  ["config.json num_hidden_layers = 5e6", hfWith("hf-layers", "config.json", (j) => { j.num_hidden_layers = 5e6; })],
  ["tokenizer.json token id 1e9", hfWith("hf-tokid", "tokenizer.json", (j) => { j.model.vocab["<0x41>"] = 1e9; })],
  ["tokenizer.json post_processor item true", hfWith("hf-post", "tokenizer.json", (j) => { j.post_processor.single[0] = true; })],
  ["NaN at blk.1.ffn_up.weight[1234]", await gguf("nan.gguf", undefined, nan)],
];
const out = join(dir, "out");
mkdirSync(out);
const commands = (m) => [
  ["info", m],
  ["convert", m, join(out, "o.gguf")],
  ["convert", m, join(out, "o.gguf"), "--type", "Q8_0"],
  ["convert", m, join(out, "o.safetensors"), "--type", "F16"],
  ["quantize", m, "--type", "Q4_K_M", "-o", join(out, "q.gguf")],
  ["quantize", m, "--spec", "int4:g32:asym", "-o", join(out, "q.safetensors")],
  ["eval", m, "--text", TEXT, "--ctx", "128", "--max-tokens", "500"],
];
for (const [label, m] of inputs) {
  console.log(`\n## ${label}`);
  for (const args of commands(m)) {
    const r = spawnSync("/usr/bin/time", ["-f", "%e %M", process.execPath, BIN, ...args], { encoding: "utf8" });
    const lines = r.stderr.trimEnd().split("\n").filter((l) => !l.startsWith("Command exited with"));
    const [sec, kb] = lines.pop().split(" ");
    const left = readdirSync(out);
    console.log(`${args[0]} ${args.slice(2).filter((a) => a.startsWith("-") || /^[A-Z0-9_]+$|:/.test(a)).join(" ")}: exit ${r.status}, ${sec} s, ${(Number(kb) / 1024).toFixed(0)} MB, ${lines.length} stderr line(s), ${left.length} file(s) left | ${lines[lines.length - 1]?.replace(dir, "<dir>").slice(0, 200) ?? ""}`);
    for (const f of left) rmSync(join(out, f), { recursive: true, force: true });
  }
}
rmSync(dir, { recursive: true, force: true });
