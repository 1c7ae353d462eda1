/**
 * The hostile inputs of issue 14, through the CLI: each gives one error line naming the file and the
 * key, tensor or JSON path, a non-zero exit, nothing left in the output directory, and takes seconds
 * (before: minutes and > 4 GB for a huge layer count, > 60 s for a token id of 1e9, exceptions from
 * inside @huggingface/tokenizers at encode time).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../../src/io/node/data.js";
import { loadModel } from "../../../src/io/node/load.js";
import { saveHfDir, saveSafetensorsFile } from "../../../src/io/node/hf-file.js";
import { GgufValueType } from "../../../src/io/gguf.js";
import { cli, rewriteGguf, type Run } from "../helpers-cli.js";

const G260 = dataPath("ggml", "stories260K", "stories260K-F32.gguf");
const TEXT = dataPath("tinystories", "eval.txt");

/** Rewrites a safetensors file's JSON header (by hand: independent of our writer); data bytes kept. */
function rewriteSafetensorsHeader(bytes: Uint8Array, edit: (h: Record<string, unknown>) => void): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  edit(h);
  const enc = new TextEncoder().encode(JSON.stringify(h));
  const out = new Uint8Array(8 + enc.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(enc.length), true);
  out.set(enc, 8);
  out.set(bytes.subarray(8 + n), 8 + enc.length);
  return out;
}

function expectError(r: Run, re: RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what}: exit 0; stdout ${r.stdout.slice(0, 200)}`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${what}: stderr has ${lines.length} lines: ${r.stderr}`);
  assert.match(lines[0]!, /^quantlab: error: /, what);
  assert.match(lines[0]!, re, what);
}

describe("hostile inputs (issue 14): one-line errors naming the file, nothing left behind, in seconds", () => {
  let dir: string;
  let hf: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ql-hostile-"));
    const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
    hf = join(dir, "base-hf");
    await saveHfDir(src, hf);
    await saveSafetensorsFile(src, join(dir, "base.safetensors"));
    await src.close?.();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A copy of the HF directory with one JSON file edited. */
  function hfWith(name: string, file: string, edit: (j: Record<string, unknown>) => void): string {
    const d = join(dir, name);
    cpSync(hf, d, { recursive: true });
    const j = JSON.parse(readFileSync(join(d, file), "utf8")) as Record<string, unknown>;
    edit(j);
    writeFileSync(join(d, file), JSON.stringify(j));
    return d;
  }

  const cases: [string, () => Promise<string> | string, RegExp][] = [
    ["GGUF llama.block_count = 4194304", async () => {
      const p = join(dir, "layers.gguf");
      writeFileSync(p, await rewriteGguf(readFileSync(G260), (md) => md.set("llama.block_count", { type: GgufValueType.UINT32, value: 4194304 })));
      return p;
    }, /layers\.gguf: llama\.block_count = 4194304 is above MAX_LAYERS = 4096/],
    ["GGUF llama.block_count = 7 (two more than the tensors back)", async () => {
      const p = join(dir, "layers7.gguf");
      writeFileSync(p, await rewriteGguf(readFileSync(G260), (md) => md.set("llama.block_count", { type: GgufValueType.UINT32, value: 7 })));
      return p;
    }, /layers7\.gguf: llama\.block_count = 7 but the file has tensors for 5 layers \(blk\.0\.\* … blk\.4\.\*\)/],
    ["config.json num_hidden_layers = 5e6", () => hfWith("hf-layers", "config.json", (j) => { j.num_hidden_layers = 5e6; }), /hf-layers\/config\.json: num_hidden_layers = 5000000 is above MAX_LAYERS = 4096/],
    ["config.json num_hidden_layers = 4 (one fewer than the shards hold)", () => hfWith("hf-layers4", "config.json", (j) => { j.num_hidden_layers = 4; }), /hf-layers4\/config\.json: num_hidden_layers = 4 but the file has tensors for 5 layers/],
    ["config.json rms_norm_eps = NaN-ish (a string)", () => hfWith("hf-eps", "config.json", (j) => { j.rms_norm_eps = "1e-5"; }), /hf-eps\/config\.json: rms_norm_eps = "1e-5" is not a finite positive number/],
    ["tokenizer.json token id 1e9", () => hfWith("hf-tokid", "tokenizer.json", (j) => { (j.model as { vocab: Record<string, number> }).vocab["<0x41>"] = 1e9; }), /hf-tokid\/tokenizer\.json: model\.vocab\["<0x41>"\]: expected an integer in \[0, 512\), got 1000000000/],
    ["tokenizer.json added token id 1e9", () => hfWith("hf-added", "tokenizer.json", (j) => { (j.added_tokens as { id: number }[])[0]!.id = 1e9; }), /hf-added\/tokenizer\.json: added_tokens\[0\]\.id: expected an integer in \[0, 512\)/],
    ["tokenizer.json post_processor item `true`", () => hfWith("hf-post", "tokenizer.json", (j) => { (j.post_processor as { single: unknown[] }).single[0] = true; }), /hf-post\/tokenizer\.json: post_processor\.single\[0\]: expected an object, got true/],
    ["tokenizer.json decoder Strip start 1e9", () => hfWith("hf-strip", "tokenizer.json", (j) => { (j.decoder as { decoders: { start?: number }[] }).decoders[3]!.start = 1e9; }), /hf-strip\/tokenizer\.json: decoder\.decoders\[3\]\.start: expected an integer in \[0, 65537\)/],
    ["tokenizer.json decoder of an unknown type", () => hfWith("hf-dec", "tokenizer.json", (j) => { j.decoder = { type: "Nope" }; }), /hf-dec\/tokenizer\.json: cannot build the tokenizer \(Unknown Decoder type: Nope\)/],
    ["safetensors: embedded tokenizer JSON cut short", () => {
      const p = join(dir, "embedded.safetensors");
      writeFileSync(p, rewriteSafetensorsHeader(readFileSync(join(dir, "base.safetensors")), (h) => {
        const md = h.__metadata__ as Record<string, string>;
        md["quantlab.tokenizer"] = md["quantlab.tokenizer"]!.slice(0, 100);
      }));
      return p;
    }, /embedded\.safetensors: __metadata__ "quantlab\.tokenizer": not valid JSON/],
    ["safetensors: embedded config with 1e9 layers", () => {
      const p = join(dir, "embedded-cfg.safetensors");
      writeFileSync(p, rewriteSafetensorsHeader(readFileSync(join(dir, "base.safetensors")), (h) => {
        const md = h.__metadata__ as Record<string, string>;
        md["quantlab.config"] = md["quantlab.config"]!.replace('"num_hidden_layers":5', '"num_hidden_layers":1000000000');
      }));
      return p;
    }, /embedded-cfg\.safetensors: __metadata__ "quantlab\.config": num_hidden_layers = 1000000000 is above MAX_LAYERS/],
  ];

  test("architectures quantlab does not run: info checks <arch>.block_count against blk.N tensors when the file has them", async () => {
    const { GgufWriter, MemorySink, openGguf } = await import("../../../src/io/gguf.js");
    const { BufferSource } = await import("../../../src/io/source.js");
    const { ggufInfo } = await import("../../../src/io/info.js");
    const { GgmlType } = await import("../../../src/ggml/types.js");
    const make = async (arch: string, blocks: number, names: string[]) => {
      const sink = new MemorySink();
      const w = new GgufWriter(sink);
      w.setKV("general.architecture", { type: GgufValueType.STRING, value: arch });
      w.setKV(`${arch}.block_count`, { type: GgufValueType.UINT32, value: blocks });
      for (const n of names) w.addTensor({ name: n, shape: [4, 4], type: GgmlType.F32 });
      await w.writeHeader();
      for (const n of names) await w.writeTensorData(n, new Uint8Array(64));
      w.finish();
      return openGguf(new BufferSource(`${arch}.gguf`, sink.bytes()));
    };
    // T5 names its blocks enc.blk.N / dec.blk.N: nothing to compare, the report is made
    const t5 = ggufInfo(await make("t5", 2, ["enc.blk.0.attn_q.weight", "enc.blk.1.attn_q.weight", "dec.blk.0.attn_q.weight", "dec.blk.1.attn_q.weight"]));
    assert.match(t5.configError ?? "", /architecture "t5" is not supported/);
    // a bound holds whatever the naming; and where blk.N tensors exist, the count must match them
    const huge = await make("t5", 1_000_000, ["enc.blk.0.attn_q.weight"]);
    assert.throws(() => ggufInfo(huge), /t5\.gguf: t5\.block_count = 1000000 is above MAX_LAYERS = 4096/);
    const qwen = await make("qwen2", 3, ["blk.0.attn_q.weight", "blk.1.attn_q.weight"]);
    assert.throws(() => ggufInfo(qwen), /qwen2\.gguf: qwen2\.block_count = 3 but the file has tensors for 2 layers \(blk\.0\.\* … blk\.1\.\*\)/);
  });

  const commands = (input: string, out: string): string[][] => [
    ["info", input],
    ["convert", input, join(out, "o.gguf")],
    ["convert", input, join(out, "o.safetensors"), "--type", "F16"],
    ["quantize", input, "--type", "Q8_0", "-o", join(out, "q.gguf")],
    ["quantize", input, "--spec", "int8:channel", "-o", join(out, "q.safetensors")],
    ["eval", input, "--text", TEXT, "--max-tokens", "100", "--ctx", "64"],
  ];

  for (const [label, make, re] of cases) {
    test(label, async () => {
      const input = await make();
      const out = join(dir, `out-${label.replace(/\W+/g, "_")}`);
      mkdirSync(out);
      for (const args of commands(input, out)) {
        const t0 = Date.now();
        const r = await cli(args, ""); // absolute paths: nothing to resolve (a spec like int8:channel is not a path)
        const ms = Date.now() - t0;
        expectError(r, re, args.join(" "));
        // seconds, not minutes: a loaded 2-core machine still runs these in well under one
        assert.ok(ms < 5000, `${args[0]}: ${ms} ms`);
        assert.deepEqual(readdirSync(out), [], `${args.join(" ")} left ${readdirSync(out).join(", ")}`);
      }
    });
  }
});
