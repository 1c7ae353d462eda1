/** The command table (cli/commands/index.ts): a run of one command loads that command alone; help and unknown names see every command. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { quantlab } from "../helpers-cli.js";

const ALL = ["run", "eval", "kld", "info", "convert", "formats", "quantize", "compare", "inspect", "bench", "qat", "report", "lab", "export"];

test("--help lists every command, in table order", () => {
  const r = quantlab("--help");
  assert.equal(r.status, 0, r.stderr);
  const listed = [...r.stdout.split("Commands:")[1]!.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]);
  assert.deepEqual(listed, [...ALL, "help"]);
});

test("a named command (after --verbose too) is registered alone and runs; an unknown name is still refused with the list's error", () => {
  const q = quantlab("--verbose", "quantize", "--help");
  assert.equal(q.status, 0, q.stderr);
  assert.match(q.stdout, /^Usage: quantlab quantize \[options\] <model>/);
  const f = quantlab("formats", "--family", "int", "--json");
  assert.equal(f.status, 0, f.stderr);
  assert.ok(JSON.parse(f.stdout).formats.every((x: { family: string }) => x.family === "int"));
  const bad = quantlab("quantise", "m.gguf");
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command 'quantise'/);
  assert.match(bad.stderr, /quantize/); // commander's suggestion: every command was registered
});
