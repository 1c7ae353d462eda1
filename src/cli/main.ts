/**
 * quantlab CLI entry. Commands are thin: parse options, call the library, print text or `--json`.
 * Each command lives in cli/commands/<name>.ts and exports `register(program)`.
 */
import { Command, CommanderError } from "commander";
import { reportError } from "./util.js";
import { commandsFor } from "./commands/index.js";
import { closeLoadedModels } from "./model-options.js";

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name("quantlab")
    .description("Quantize, evaluate, convert and run LLMs in TypeScript")
    .option("--verbose", "print stack traces and extra diagnostics")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  for (const register of await commandsFor(argv)) register(program);
  const verbose = argv.includes("--verbose");
  // `quantlab run ... | head` closes stdout early: that is not an error, stop quietly (once per process:
  // tests call main() many times)
  if (!process.stdout.listeners("error").includes(onStdoutError)) process.stdout.on("error", onStdoutError);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(err, verbose);
  } finally {
    // the files of lazily loaded models stay open while the command runs
    await closeLoadedModels();
  }
}

function onStdoutError(e: NodeJS.ErrnoException): void {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
}
