/** The command table: one line per command file. */
import type { Command } from "commander";

export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [];
import { register as registerRun } from "./run.js"; commands.push(registerRun);
import { register as registerEval } from "./eval.js"; commands.push(registerEval);
import { register as registerKld } from "./kld.js"; commands.push(registerKld);
import { register as registerInfo } from "./info.js"; commands.push(registerInfo);
import { register as registerConvert } from "./convert.js"; commands.push(registerConvert);
import { register as registerFormats } from "./formats.js"; commands.push(registerFormats);
import { register as registerQuantize } from "./quantize.js"; commands.push(registerQuantize);
import { register as registerCompare } from "./compare.js"; commands.push(registerCompare);
import { register as registerInspect } from "./inspect.js"; commands.push(registerInspect);
import { register as registerBench } from "./bench.js"; commands.push(registerBench);
import { register as registerQat } from "./qat.js"; commands.push(registerQat);
import { register as registerReport } from "./report.js"; commands.push(registerReport);
import { register as registerLab } from "./lab.js"; commands.push(registerLab);
import { register as registerExport } from "./export.js"; commands.push(registerExport);
