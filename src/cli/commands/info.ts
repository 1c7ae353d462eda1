/** `quantlab info <model>`: architecture, hyper-parameters, tokenizer, tensors with types, sizes and bits/weight. */
import type { Command } from "commander";
import { namingFile } from "../../core/errors.js";
import { detectFormat } from "../../io/node/load.js";
import { loadCliModel } from "../model-options.js";
import { openGgufFile } from "../../io/node/gguf-file.js";
import { formatInfo, ggufInfo, modelInfo } from "../../io/info.js";
import { defaultModelPath } from "../../io/node/data.js";
import { isHubRef } from "../../io/hub.js";
import { printJson, stderrProgress } from "../util.js";

interface InfoOptions {
  tokenizer?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command("info")
    .description("show a model's architecture, hyper-parameters, tokenizer and tensors (type, bytes, bits/weight); reads headers only")
    .argument("[model]", "GGUF (any), llama2.c .bin, .safetensors, Hugging Face directory or hf://owner/name[@rev] (default: shared stories260K)")
    .option("--tokenizer <file>", "tokenizer file for llama2.c models when it is not beside the model")
    .option("--json", "print one JSON object")
    .action(async (modelArg: string | undefined, o: InfoOptions) => {
      const path = modelArg ?? defaultModelPath();
      let report;
      if (!isHubRef(path) && (await detectFormat(path)) === "gguf") {
        const f = await openGgufFile(path);
        try {
          report = ggufInfo(f);
        } catch (e) {
          throw namingFile(e, path);
        } finally {
          await f.close();
        }
      } else {
        // lazily loaded: the report needs shapes and types only, so no tensor bytes are read
        report = modelInfo(await loadCliModel(path, { tokenizer: o.tokenizer, progress: stderrProgress() }));
      }
      if (o.json) printJson(report);
      else process.stdout.write(formatInfo(report) + "\n");
    });
}
