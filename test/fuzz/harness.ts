/**
 * The fuzzing harness: base files built from ../shared/data (real models, converted by quantlab into
 * each format), one mutant per case written into a scratch directory, loaded through the same entry
 * point the CLI uses (`loadModel`, plus `info` and GGUF → GGUF `convert` for GGUF), then used the way
 * commands use a model: every tensor read, the tokenizer run, one forward pass.
 *
 * A case's outcome is one of: loads (the mutation did not matter or was harmless), a typed error
 * (QuantlabError naming the file: what we want for a broken file), untyped (anything else: an exception
 * of another class, or a message without the file name), wrapped (a dependency's exception that only the
 * boundary wrapper in errors.ts `namingFile` caught: a validation gap, counted apart), slow (over the
 * time bound).
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { QuantlabError } from "../../src/core/errors.js";
import { dataPath } from "../../src/io/node/data.js";
import { loadModel } from "../../src/io/node/load.js";
import { saveHfDir, saveSafetensorsFile } from "../../src/io/node/hf-file.js";
import { saveQuantModelFile } from "../../src/io/node/quant-file.js";
import { openGgufFile } from "../../src/io/node/gguf-file.js";
import { ggufInfo, modelInfo } from "../../src/io/info.js";
import { convertGguf } from "../../src/io/gguf-convert.js";
import { quantize } from "../../src/algos/quantize.js";
import { RefBackend } from "../../src/kernels/ref/backend.js";
import { dequantizeWeight } from "../../src/kernels/dequantize.js";
import { Llama } from "../../src/model/llama.js";
import type { Model } from "../../src/model/weights.js";
import { ggufLayout, mutateGguf, mutateJsonText, mutateLlama2c, mutateLlama2cTokenizer, mutateSafetensors, Choices, type Mutation } from "./mutate.js";

export const FORMATS = ["gguf", "safetensors", "llama2c", "tokenizer", "hf"] as const;
export type FuzzFormat = (typeof FORMATS)[number];

export type Outcome = "loads" | "typed" | "untyped" | "wrapped" | "slow";

export interface CaseResult {
  outcome: Outcome;
  ms: number;
  message?: string;
  /** which base file / which part was mutated */
  target: string;
}

/** What a case mutates: one file of a base set; the rest of the set is written unchanged beside it. */
interface Base {
  name: string;
  /** files of the set, by name */
  files: Map<string, Uint8Array>;
  /** the file to mutate and how */
  target: string;
  mutate: (bytes: Uint8Array, muts: Mutation[]) => Uint8Array;
  /** path handed to loadModel, relative to the case directory ("" = the directory itself) */
  entry: string;
  gguf?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function jsonMutator(bytes: Uint8Array, muts: Mutation[]): Uint8Array {
  return enc.encode(mutateJsonText(dec.decode(bytes), muts));
}

function readDir(dir: string): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir)) m.set(f, new Uint8Array(readFileSync(join(dir, f))));
  return m;
}

/** Builds every base set in `work` (once per run). */
export async function buildCorpus(work: string): Promise<Record<FuzzFormat, Base[]>> {
  mkdirSync(work, { recursive: true });
  const src = await loadModel(dataPath("stories260K", "stories260K.bin"));
  const hfDir = join(work, "base-hf");
  rmSync(hfDir, { recursive: true, force: true });
  await saveHfDir(src, hfDir, { maxShardBytes: 600_000 }); // two shards + index
  const st = join(work, "base.safetensors");
  await saveSafetensorsFile(src, st);
  const q = await quantize(src, { target: { spec: "int4:g32:asym" }, method: "rtn" }, { backend: new RefBackend() });
  const qst = join(work, "base-q.safetensors");
  await saveQuantModelFile(q.model, qst);
  const hf = readDir(hfDir);
  const tok = new Uint8Array(readFileSync(dataPath("stories260K", "tok512.bin")));
  const file = (p: string) => new Uint8Array(readFileSync(p));
  const gguf = (p: string): Base => {
    const b = file(p);
    const layout = ggufLayout(b);
    return { name: p.split("/").pop()!, files: new Map([["m.gguf", b]]), target: "m.gguf", entry: "m.gguf", gguf: true, mutate: (x, muts) => mutateGguf(x, layout, muts) };
  };
  const llama2c = (p: string): Base => ({ name: p.split("/").pop()!, files: new Map([["m.bin", file(p)], ["tok512.bin", tok]]), target: "m.bin", entry: "m.bin", mutate: mutateLlama2c });
  const hfSet = (target: string, mutate: Base["mutate"]): Base => ({ name: `hf/${target}`, files: hf, target, entry: "", mutate });
  await src.close?.();
  return {
    gguf: [
      gguf(dataPath("ggml", "stories260K", "stories260K-F32.gguf")),
      gguf(dataPath("ggml", "stories260K", "stories260K-Q4_K_M.gguf")),
      gguf(dataPath("ggml", "golden-q4_K.gguf")),
    ],
    safetensors: [
      { name: "stories260K.safetensors", files: new Map([["m.safetensors", file(st)]]), target: "m.safetensors", entry: "m.safetensors", mutate: mutateSafetensors },
      { name: "stories260K-int4.safetensors", files: new Map([["m.safetensors", file(qst)]]), target: "m.safetensors", entry: "m.safetensors", mutate: mutateSafetensors },
    ],
    llama2c: [llama2c(dataPath("stories260K", "stories260K.bin")), llama2c(dataPath("stories260K", "stories260K-q8.bin"))],
    tokenizer: [
      hfSet("tokenizer.json", jsonMutator),
      hfSet("tokenizer_config.json", jsonMutator),
      { name: "tok512.bin", files: new Map([["m.bin", file(dataPath("stories260K", "stories260K.bin"))], ["tok512.bin", tok]]), target: "tok512.bin", entry: "m.bin", mutate: mutateLlama2cTokenizer },
    ],
    hf: [
      hfSet("config.json", jsonMutator),
      hfSet("model.safetensors.index.json", jsonMutator),
      hfSet("model-00001-of-00002.safetensors", mutateSafetensors),
      hfSet("model-00002-of-00002.safetensors", mutateSafetensors),
      // a file missing from the set
      { name: "hf/missing", files: hf, target: "", entry: "", mutate: (b) => b },
    ],
  };
}

const PROBE = "Once upon a time, Lily saw a big dog. ünï 日本\n";

/** Uses a loaded model as commands do; throws what they would see. */
function useModel(m: Model): void {
  modelInfo(m);
  for (const [name, w] of m.weights) dequantizeWeight(w, name);
  if (m.tokenizer) {
    const ids = m.tokenizer.encode(PROBE, { bos: true });
    m.tokenizer.decode(ids);
    for (let i = 1; i < Math.min(ids.length, 8); i++) m.tokenizer.decodeToken(ids[i - 1]!, ids[i]!);
  }
  const llama = new Llama(m, { backend: new RefBackend(), contextLength: 4 });
  llama.forward(m.tokenizer ? Math.max(0, m.tokenizer.bosId) : 0, 0);
}

export function classify(e: unknown, names: string[]): { outcome: Outcome; message: string } {
  const message = e instanceof Error ? e.message : String(e);
  if (!(e instanceof QuantlabError)) return { outcome: "untyped", message: `${(e as Error)?.name ?? typeof e}: ${message}` };
  if (!names.some((n) => message.includes(n))) return { outcome: "untyped", message: `(no file name) ${message}` };
  if (e.cause !== undefined && !(e.cause instanceof QuantlabError) && /cannot read the file \(/.test(message)) return { outcome: "wrapped", message };
  return { outcome: "typed", message };
}

/** A sink that counts bytes (GGUF → GGUF convert without writing a file). */
const nullSink = { bytes: 0, async write(c: Uint8Array) { this.bytes += c.length; } };

/**
 * Runs one case in `dir` (emptied first): writes the base set with its target mutated, then loads and
 * uses it. `slowMs` classifies a case that took longer as slow.
 */
export async function runCase(base: Base, muts: Mutation[], dir: string, slowMs: number): Promise<CaseResult> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let dropped = "";
  if (base.target === "") {
    // drop one file of the set
    const names = [...base.files.keys()];
    dropped = new Choices(muts[0]!.choices).pick(names);
  }
  for (const [name, bytes] of base.files) {
    if (name === dropped) continue;
    let b = bytes;
    if (name === base.target) {
      try {
        b = base.mutate(bytes, muts);
      } catch (e) {
        // a defect of the mutator, not of quantlab: reported as such, never counted as a reader failure
        throw new Error(`mutator failed on ${base.name} with ${JSON.stringify(muts)}: ${(e as Error).stack}`);
      }
    }
    writeFileSync(join(dir, name), b);
  }
  const entry = base.entry === "" ? dir : join(dir, base.entry);
  const t0 = performance.now();
  let outcome: Outcome = "loads";
  let message: string | undefined;
  try {
    if (base.gguf) {
      const f = await openGgufFile(entry);
      try {
        ggufInfo(f);
        nullSink.bytes = 0;
        await convertGguf(f, nullSink, {}, join(dir, "out.gguf"));
      } finally {
        await f.close();
      }
    }
    const m = await loadModel(entry);
    try {
      useModel(m);
    } finally {
      await m.close?.();
    }
  } catch (e) {
    ({ outcome, message } = classify(e, [entry, dir]));
  }
  const ms = performance.now() - t0;
  if (ms > slowMs && outcome !== "untyped") {
    message = `${ms.toFixed(0)} ms: ${message ?? "(loaded)"}`;
    outcome = "slow";
  }
  return { outcome, ms, target: `${base.name}${dropped ? ` without ${dropped}` : ""}`, ...(message !== undefined ? { message } : {}) };
}
