/**
 * `quantlab formats [--json] [--family f] [--values name]`: every registered number format with its family,
 * bits, value count and range. JSON: `{ formats: [FormatInfo…], constructors: [...] }` (quant/ adds keys
 * for schemes, granularities and options).
 */
import type { Command } from "commander";
import { QuantlabError } from "../../core/errors.js";
import { formatInfo, getFormat, listFormats, type FormatInfo } from "../../formats/registry.js";
import { printJson } from "../util.js";
import { specCatalog } from "../../quant/catalog.js";

interface FormatsOptions {
  json?: boolean;
  family?: string;
  values?: string;
}

/** Parametric formats built in code rather than listed as rows. */
export const FORMAT_CONSTRUCTORS = [
  { name: "minifloat", module: "formats/float", params: "{ e, m, bias?, subnormals?|zeroExp?, special?: ieee|fn|fnuz|none, signed?, overflow? }", description: "any ExMy minifloat; the fp rows are instances" },
  { name: "intGrid", module: "formats/int", params: "{ bits: 1..32, signed, restricted?, fracBits? }", description: "any integer grid or Qm.n fixed point" },
  { name: "codebookFormat", module: "formats/codebook", params: "levels[]", description: "learned non-uniform levels (fit with lloyd1d or algos/kmeans)" },
  { name: "logFormat", module: "formats/log", params: "{ bits, log2Base?, maxExp? }", description: "sign + exponent in any base (2, √2, …)" },
  { name: "pow2SumFormat", module: "formats/log", params: "{ eMin, eMax }", description: "0, ±2^a, ±(2^a + 2^b)" },
  { name: "toDyadic", module: "formats/int", params: "(x, mBits?, maxShift?)", description: "nearest m/2^k to a real scale (integer-only requantization)" },
];

function num(x: number | null): string {
  if (x === null) return "-";
  if (x === 0 || (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e6)) return String(Number(x.toPrecision(6)));
  return x.toExponential(3);
}

function table(rows: FormatInfo[]): string {
  const head = ["id", "name", "family", "bits", "values", "min", "max", "min>0", "description"];
  const body = rows.map((r) => [String(r.id), r.name, r.family, String(r.bits), r.valueCount === null ? "-" : String(r.valueCount), num(r.min), num(r.max), num(r.minPositive), r.description]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (i === head.length - 1 ? 0 : b[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(head), ...body.map(line)].join("\n");
}

export function register(program: Command): void {
  program
    .command("formats")
    .description("list every number format: family, bits per element, value count, range")
    .option("--family <family>", "only this family (float, int, codebook, ternary, binary, log, zero, block)")
    .option("--values <format>", "also list every finite value of one format (≤ 16 bits)")
    .option("--json", "print one JSON object { formats: [...], constructors: [...] }")
    .action((o: FormatsOptions) => {
      let rows = listFormats().map(formatInfo);
      if (o.family) {
        const fams = [...new Set(rows.map((r) => r.family))];
        if (!fams.includes(o.family)) throw new QuantlabError("E_ARG", `option --family: unknown family "${o.family}" (valid: ${fams.join(", ")})`);
        rows = rows.filter((r) => r.family === o.family);
      }
      let values: { format: string; values: number[] } | undefined;
      if (o.values) {
        const f = getFormat(o.values);
        const v = f.values();
        if (!v) throw new QuantlabError("E_ARG", `option --values: ${f.name} has ${f.bits}-bit codes, too many values to list`);
        values = { format: f.name, values: Array.from(v) };
      }
      if (o.json) {
        printJson({ formats: rows, constructors: FORMAT_CONSTRUCTORS, ...(values ? { values } : {}), specs: specCatalog() });
        return;
      }
      process.stdout.write(table(rows) + "\n");
      if (values) process.stdout.write(`\n${values.format} (${values.values.length} values):\n${values.values.map((x) => num(x)).join(" ")}\n`);
      else {
        process.stdout.write(`\n${rows.length} formats. Parametric constructors: ${FORMAT_CONSTRUCTORS.map((c) => c.name).join(", ")} (see docs/formats.md).\n`);
        const c = specCatalog();
        process.stdout.write(`\nSpecs: ${c.grammar} (docs/quant-format.md)\n`);
        process.stdout.write(`  presets:       ${c.presets.map((p) => p.name).join(", ")}\n`);
        process.stdout.write(`  granularity:   ${c.granularities.map((g) => g.token).join(", ")}\n`);
        process.stdout.write(`  scheme:        ${c.schemes.map((g) => g.token).join(", ")}\n`);
        process.stdout.write(`  calibration:   ${c.calibrations.map((g) => g.token).join(", ")}\n`);
        process.stdout.write(`  rounding:      ${c.rounding.map((g) => g.token).join(", ")}\n`);
        process.stdout.write(`  options:       ${c.options.map((g) => g.token).join(", ")}; scale dtypes ${c.scaleDtypes.join(", ")}\n`);
        process.stdout.write(`\nbits per weight (64 × 4096 weight, scales and zero points included):\n`);
        for (const e of c.examples) process.stdout.write(`  ${e.spec.padEnd(26)} ${e.bitsPerWeight.toFixed(4)}\n`);
      }
    });
}
