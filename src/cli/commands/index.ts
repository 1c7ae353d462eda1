/**
 * The command table: one line per command file, each imported only when needed — a run of one command
 * (`quantlab quantize …`) loads that command's modules alone (the others' imports — model runners, tokenizers,
 * the lab's server, ONNX — cost ≈ 0.2 s of start-up); help and unknown names load them all.
 */
import type { Command } from "commander";

export type RegisterCommand = (program: Command) => void;

type CommandModule = () => Promise<{ register: RegisterCommand }>;

/** name → module, in the order `--help` lists them */
export const COMMAND_MODULES: readonly (readonly [string, CommandModule])[] = [
  ["run", () => import("./run.js")],
  ["eval", () => import("./eval.js")],
  ["kld", () => import("./kld.js")],
  ["info", () => import("./info.js")],
  ["convert", () => import("./convert.js")],
  ["formats", () => import("./formats.js")],
  ["quantize", () => import("./quantize.js")],
  ["compare", () => import("./compare.js")],
  ["inspect", () => import("./inspect.js")],
  ["bench", () => import("./bench.js")],
  ["qat", () => import("./qat.js")],
  ["report", () => import("./report.js")],
  ["lab", () => import("./lab.js")],
  ["export", () => import("./export.js")],
];

/** The register functions `argv` needs: the named command's when its first operand names one, else all of them. */
export async function commandsFor(argv: readonly string[]): Promise<RegisterCommand[]> {
  // the only program-level option (--verbose) takes no value: the first operand is the command
  const name = argv.slice(2).find((a) => !a.startsWith("-"));
  const one = COMMAND_MODULES.find(([n]) => n === name);
  const mods = one ? [one] : COMMAND_MODULES;
  return Promise.all(mods.map(async ([, load]) => (await load()).register));
}
