// A/B of two builds on a whole GGUF model in one process: pp<prompt> prefill of this tree's WASM backend ("new")
// against another build tree's ("old", default build/ab-old/dist; docs/kernels.md shows how to make it), runs
// alternating, each session on the same file. Not part of `npm run bench` (files starting with "_" are skipped).
//   node dist/bench/_ab-model.js F16 [threads 1|2] [prompt 128] [reps 5]
// The model is bench/_synthetic.ts's Llama-3.2-1B-shaped GGUF of that type (written once into the bench cache).
// With 1 thread, times are the process's CPU time (robust to other jobs taking the core away); with 2, wall
// time. AB_WALL=1 forces wall time.
import { setFlagsFromString } from "node:v8";
setFlagsFromString("--experimental-wasm-relaxed-simd");

import { loadavg } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { GgmlType } from "../src/ggml/types.js";
import { benchPrompt, openQuantlabSession } from "../src/cli/commands/bench.js";
import { syntheticGguf } from "./_synthetic.js";

type Open = typeof openQuantlabSession;
const oldDist = resolve(process.env.AB_OLD ?? "build/ab-old/dist");
const openOld = ((await import(pathToFileURL(`${oldDist}/src/cli/commands/bench.js`).href)) as { openQuantlabSession: Open }).openQuantlabSession;
const [typeArg = "F16", threadsArg = "1", promptArg = "128", repsArg = "5"] = process.argv.slice(2);
const type = (GgmlType as unknown as Record<string, GgmlType>)[typeArg];
if (type === undefined) throw new Error(`_ab-model: unknown type ${typeArg}`);
const threads = Number(threadsArg), prompt = Number(promptArg), reps = Number(repsArg);
const cpuTime = threads === 1 && process.env.AB_WALL !== "1";
const file = await syntheticGguf(type, undefined, undefined, (m) => console.log(m));
const opts = { threads: Math.max(2, threads), context: prompt + 8, batch: prompt, backend: "wasm" as const };
const s = { old: await openOld(file.path, opts), new: await openQuantlabSession(file.path, opts) };
s.old.setThreads(threads);
s.new.setThreads(threads);
const tokens = benchPrompt(s.new.llama.config.vocabSize, prompt);

/** ms of one prefill (CPU or wall time) */
async function timed(k: "old" | "new"): Promise<number> {
  const c0 = process.cpuUsage();
  const wall = await s[k].prefill(tokens);
  const c = process.cpuUsage(c0);
  return cpuTime ? (c.user + c.system) / 1000 : wall;
}

const load0 = loadavg()[0]!.toFixed(2);
await timed("old");
await timed("new");
const t = { old: [] as number[], new: [] as number[] };
for (let r = 0; r < reps; r++) for (const k of r % 2 ? (["new", "old"] as const) : (["old", "new"] as const)) t[k].push(await timed(k));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const ratios = t.old.map((o, i) => o / t.new[i]!);
const tps = (ts: number[]): string => ((prompt * 1000) / median(ts)).toFixed(2);
console.log(`${cpuTime ? "cpu" : "wall"} t${threads} ${typeArg} pp${prompt}: old ${tps(t.old)} tok/s, new ${tps(t.new)} tok/s, old/new time ${median(ratios).toFixed(2)} [${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}] (load ${load0}→${loadavg()[0]!.toFixed(2)})`);
await s.old.close();
await s.new.close();
