/** `quantlab kld <base> <other> --text f`: KL divergence, top-1 agreement and Δp between two models. */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { Llama } from "../../model/llama.js";
import { kld, ModelLogits, type LogitsSource } from "../../eval/kld.js";
import { isLogitsFile, SavedLogits } from "../../eval/logits-file.js";
import { openFile } from "../../io/node/file.js";
import { existsSync, statSync } from "node:fs";
import { printJson, stderrProgress } from "../util.js";
import { addBackendOptions, addKvOption, addPackedActivationsOption, checkPackedActivations, backendFromOptions, backendReady, placerOf, displayName, kvCacheOption, loadCliModel, loadModelWithTokenizer, positiveInt, type BackendOptions } from "../model-options.js";
import { readTextFile, warnContext } from "./eval.js";

interface KldOptions extends BackendOptions {
  text?: string;
  ctx?: number;
  maxTokens?: number;
  tokenizer?: string;
  kv?: string;
  json?: boolean;
}

async function openSaved(path: string): Promise<SavedLogits | undefined> {
  if (!existsSync(path) || statSync(path).isDirectory()) return undefined;
  const src = openFile(path);
  if (!(await isLogitsFile(src))) {
    await src.close();
    return undefined;
  }
  return SavedLogits.open(src);
}

export function register(program: Command): void {
  const cmd = program
    .command("kld")
    .description("KL divergence KLD(base‖other), top-1 agreement and |Δp| of the correct token, on the same windows")
    .argument("<base>", "base model, or a logits file saved by `quantlab eval --save-logits`")
    .argument("<other>", "model to compare (same vocabulary)")
    .option("--text <file>", "UTF-8 text to score (not needed when <base> is a logits file)")
    .option("--ctx <n>", "window length in positions, BOS included (default 256, or the logits file's)", positiveInt("--ctx"))
    .option("--max-tokens <n>", "stop after this many scored tokens (whole windows)", positiveInt("--max-tokens"))
    .option("--tokenizer <file>", "tokenizer file (llama2.c tok.bin) for models that lack one beside them")
    .option("--json", "print one JSON object {meanKld, top1, tokens, ...}");
  addKvOption(cmd, "<other>");
  addPackedActivationsOption(cmd);
  addBackendOptions(cmd).action(async (basePath: string, otherPath: string, o: KldOptions) => {
      const kvOpt = kvCacheOption(o); // the base keeps its f32 cache: `kld m m --kv int4` measures the cache alone
      // one backend serves both models; created on first use, disposed at the end
      let backend: ReturnType<typeof backendFromOptions> | undefined;
      const getBackend = () => (backend ??= backendFromOptions(o));
      try {
        const saved = await openSaved(basePath);
        let base: LogitsSource;
        let tokens: ArrayLike<number>;
        let ctx: number;
        let bosId: number;
        if (saved) {
          ctx = saved.header.ctx;
          if (o.ctx !== undefined && o.ctx !== ctx) throw new QuantlabError("E_ARG", `--ctx ${o.ctx} differs from ${basePath}'s ctx ${ctx}`);
          tokens = saved.targets;
          bosId = saved.header.bosId;
          base = saved;
        } else {
          if (!o.text) throw new QuantlabError("E_ARG", "kld: --text <file> is required when <base> is a model");
          const text = readTextFile(o.text);
          const b = await loadModelWithTokenizer(basePath, { tokenizer: o.tokenizer, place: placerOf(getBackend()) });
          ctx = o.ctx ?? 256;
          warnContext(basePath, ctx, b.model.config.seqLen);
          tokens = b.tokenizer.encode(text, { bos: false });
          bosId = b.tokenizer.bosId;
          base = new ModelLogits(new Llama(b.model, { contextLength: ctx, backend: getBackend() }));
        }
        const otherModel = await loadCliModel(otherPath, { tokenizer: o.tokenizer, place: placerOf(getBackend()) });
        checkPackedActivations(otherModel, o, otherPath);
        await backendReady(getBackend());
        if (saved && o.text) {
          // the saved token stream must be the start of this text's encoding
          const tok = otherModel.tokenizer;
          if (!tok) throw new QuantlabError("E_ARG", `${otherPath}: no tokenizer to check --text against ${basePath}; drop --text or pass --tokenizer`);
          const enc = tok.encode(readTextFile(o.text), { bos: false });
          const t = saved.targets;
          if (enc.length < t.length || t.some((x, i) => x !== enc[i])) {
            throw new QuantlabError("E_ARG", `${basePath}: its saved tokens are not the encoding of ${o.text}`);
          }
        }
        const other = new ModelLogits(new Llama(otherModel, { contextLength: ctx, backend: getBackend(), ...kvOpt }));
        const r = await kld(base, other, tokens, { ctx, maxTokens: o.maxTokens, bosId, progress: stderrProgress(), names: [basePath, otherPath] });
        if (o.json) {
          printJson({ ...r, base: basePath, other: otherPath, backend: getBackend().name, ...(o.kv ? { kv: o.kv } : {}), ...(o.text ? { text: o.text } : {}) });
        } else {
          process.stdout.write(
            `${displayName(basePath)} → ${displayName(otherPath)}: mean KLD ${r.meanKld.toExponential(4)} nats ` +
              `(median ${r.medianKld.toExponential(3)}, p99 ${r.p99Kld.toExponential(3)}, max ${r.maxKld.toExponential(3)})\n` +
              `top-1 agreement ${(100 * r.top1).toFixed(2)}%  mean |Δp| ${r.meanAbsDeltaP.toExponential(4)}  rms Δp ${r.rmsDeltaP.toExponential(4)}\n` +
              `ppl base ${r.pplBase.toFixed(4)}  other ${r.pplOther.toFixed(4)}  (${r.tokens} tokens, ${r.windows} windows of ctx ${r.ctx})\n`,
          );
        }
      } finally {
        backend?.dispose?.();
      }
    });
}
