// Turns `quantlab compare --json` outputs into the Markdown table of docs/quant-compare.md.
// Usage: node scripts/quant-compare-md.mjs out1.json [out2.json …] > table.md
// Rows keep their order; the float model's row comes from the first file; KV rows get their own table.
import { readFileSync } from "node:fs";

const files = process.argv.slice(2).map((f) => JSON.parse(readFileSync(f, "utf8")));
const f = (x, d) => (x === null || x === undefined ? "–" : Number.isFinite(x) ? x.toFixed(d) : "∞");
const base = files[0].base;
const weightRows = files.flatMap((j) => j.rows.filter((r) => r.kv === undefined));
const kvRows = files.flatMap((j) => j.rows.filter((r) => r.kv !== undefined));
const pct = (r) => f((100 * (r.ppl - base.ppl)) / base.ppl, 2);
const note = (r) => {
  if (r.mixed) return Object.entries(r.mixed.counts).filter(([, n]) => n > 0).map(([c, n]) => `${n}× \`${c}\``).join(", ") + ` (${r.mixed.sensitivity})`;
  if (r.integer) return `integer-only; ${r.integer.accOverflows} of ${r.integer.dots} dot products overflowed`;
  return "";
};
const out = [];
if (weightRows.length) {
  out.push("| spec | bits/weight | file bytes | PPL | ΔPPL % | mean KLD | top-1 | worst SQNR dB | quantize s | note |", "|---|---|---|---|---|---|---|---|---|---|");
  out.push(`| f32 (float model) | 32 | ${base.sizeBytes} | ${f(base.ppl, 4)} | 0 | 0 | 1 | ∞ | – | |`);
  for (const r of weightRows) out.push(`| \`${r.spec}\` | ${f(r.bpw, 3)} | ${r.sizeBytes} | ${f(r.ppl, 4)} | ${pct(r)} | ${f(r.meanKld, 5)} | ${f(r.top1, 4)} | ${f(r.worstSqnrDb, 2)} | ${f(r.seconds, 2)} | ${note(r)} |`);
}
if (kvRows.length) {
  out.push("", "| KV-cache spec (weights f32) | bits per K/V element | KV bytes at ctx 512 | PPL | ΔPPL % | mean KLD | top-1 |", "|---|---|---|---|---|---|---|");
  // stories260K: 5 layers × 4 KV heads × 8 dims, K and V, 512 positions
  const elems = 2 * 5 * 512 * 4 * 8;
  out.push(`| f32 | 32 | ${elems * 4} | ${f(base.ppl, 4)} | 0 | 0 | 1 |`);
  for (const r of kvRows) out.push(`| \`${r.kv}\` | ${f(r.kvBits, 3)} | ${Math.ceil((elems * r.kvBits) / 8)} | ${f(r.ppl, 4)} | ${pct(r)} | ${f(r.meanKld, 5)} | ${f(r.top1, 4)} |`);
}
const tok = files.map((j) => j.tokens);
out.push("", `(${tok[0]} scored tokens, ctx ${files[0].ctx}${tok.some((t) => t !== tok[0]) ? "; token counts differ between runs!" : ""})`);
process.stdout.write(out.join("\n") + "\n");
