/**
 * The fuzzing suite (CI size): fast-check properties over structured mutations (test/fuzz/mutate.ts) of
 * real files from ../shared/data converted into every format quantlab reads. Per format up to 2,000
 * cases, bounded at 10 s of wall time (fast-check's interruptAfterTimeLimit), with a fixed seed so a
 * failure reproduces (QUANTLAB_FUZZ_SEED overrides it). The property: every case either loads and runs
 * or fails with a QuantlabError naming the file, each within 2 s. `npm run fuzz` is the long mode
 * (test/fuzz/run.ts; last results in docs/fuzz-results.md).
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import fc from "fast-check";
import { QuantlabError } from "../../src/core/errors.js";
import { FORMATS, buildCorpus, classify, runCase, type FuzzFormat } from "./harness.js";
import { mutationArb } from "./mutate.js";

const SEED = Number(process.env.QUANTLAB_FUZZ_SEED ?? 20240607);
const CASES = 2000;
const TIME_LIMIT_MS = 10_000;
const SLOW_MS = 2000;

describe("fuzzing: mutated model files fail cleanly", () => {
  let work: string;
  let corpus: Awaited<ReturnType<typeof buildCorpus>>;
  before(async () => {
    work = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "ql-fuzz-"));
    corpus = await buildCorpus(work);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test("the oracle: foreign exceptions and messages without the file name count as failures", () => {
    assert.equal(classify(new TypeError("x is not a function"), ["/a/m.gguf"]).outcome, "untyped");
    assert.equal(classify(new QuantlabError("E_FORMAT", "blk.0.attn_q.weight: bad"), ["/a/m.gguf"]).outcome, "untyped");
    assert.equal(classify(new QuantlabError("E_FORMAT", "/a/m.gguf: bad"), ["/a/m.gguf"]).outcome, "typed");
    const wrapped = new QuantlabError("E_FORMAT", "/a/m.gguf: cannot read the file (TypeError: x)", { cause: new TypeError("x") });
    assert.equal(classify(wrapped, ["/a/m.gguf"]).outcome, "wrapped");
  });

  for (const format of FORMATS) {
    test(`${format}: up to ${CASES} mutants, each loads or gives a QuantlabError naming the file, within ${SLOW_MS} ms`, async (t) => {
      const bases = corpus[format as FuzzFormat];
      let ran = 0;
      const seen = { loads: 0, typed: 0 };
      await fc.assert(
        fc.asyncProperty(fc.nat(bases.length - 1), mutationArb, async (which, muts) => {
          const base = bases[which]!;
          const r = await runCase(base, muts, join(work, `case-${format}`), SLOW_MS);
          ran++;
          if (r.outcome === "loads" || r.outcome === "typed") seen[r.outcome]++;
          assert.ok(r.outcome === "loads" || r.outcome === "typed", `${r.outcome} (${r.target}): ${r.message}`);
        }),
        { numRuns: CASES, seed: SEED, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false, includeErrorInReport: true },
      );
      t.diagnostic(`${ran} cases: ${seen.typed} refused with a QuantlabError naming the file, ${seen.loads} loaded`);
      // the budget must still buy a real sample on a loaded machine, and the mutations must bite
      assert.ok(ran >= 200, `only ${ran} cases ran in ${TIME_LIMIT_MS} ms`);
      assert.ok(seen.typed > ran / 2, `only ${seen.typed} of ${ran} mutants were refused: the mutations do not reach the readers`);
    });
  }
});
