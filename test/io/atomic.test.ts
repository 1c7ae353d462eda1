/**
 * Atomic writes under interruption (io/node/atomic.ts): SIGTERM / SIGINT during a write end the process
 * promptly with 143 / 130 and remove the temp file; SIGKILL leaves one, which the next write to the same
 * path removes (its pid is dead); temp files of live processes are left alone.
 */
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { dataPath } from "../../src/io/node/data.js";
import { atomicWriteDir, atomicWriteFile, DIRECT_ALIGN, DirectFileSink, FileSink, removeStaleTemps } from "../../src/io/node/atomic.js";
import { constants as fsConstants } from "node:fs";
import { closeSync, openSync, readFileSync } from "node:fs";
import { BIN } from "../cli/helpers-cli.js";

const S3M = dataPath("stories3M", "stories3M.bin");
const S260 = dataPath("stories260K", "stories260K.bin");
const TEXT = dataPath("tinystories", "eval.txt");

function start(args: string[]): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, QUANTLAB_PROGRESS: "0" } });
}

const temps = (dir: string, name: string) => readdirSync(dir).filter((f) => f.startsWith(`.${name}.tmp-`));

/** Resolves once a temp file for `name` exists in `dir` (the write has begun), or rejects after `ms`. */
async function writeBegun(dir: string, name: string, p: ChildProcess, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (temps(dir, name).length === 0) {
    if (p.exitCode !== null) throw new Error(`exited with ${p.exitCode} before writing`);
    if (Date.now() - t0 > ms) throw new Error("the write did not begin");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function exited(p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  let stderr = "";
  p.stderr!.on("data", (d) => (stderr += d));
  return new Promise((r) => p.on("exit", (code, signal) => r({ code, signal, stderr })));
}

/** The pid of a process that has exited (so is surely not alive now). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

describe("atomic writes under interruption", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "ql-atomic-")); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [sig, code, label, args, name] of [
    ["SIGTERM", 143, "convert (GGUF writer, one tensor at a time)", (d: string) => ["convert", S3M, join(d, "c.gguf"), "--type", "Q4_K", "--backend", "ref"], "c.gguf"],
    ["SIGINT", 130, "eval --save-logits (a write that lasts the whole evaluation)", (d: string) => ["eval", S260, "--text", TEXT, "--ctx", "512", "--save-logits", join(d, "l.qlgt")], "l.qlgt"],
  ] as const) {
    test(`${sig} during ${label}: exit ${code} promptly, temp file removed, no output`, async () => {
      const d = join(dir, sig);
      mkdirSync(d);
      const p = start(args(d));
      const done = exited(p);
      await writeBegun(d, name, p);
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      p.kill(sig);
      const r = await done;
      const ms = Date.now() - t0;
      assert.equal(r.code, code, `exit ${r.code} signal ${r.signal}: ${r.stderr}`);
      // promptly: within one tensor / one window of work (the whole write takes tens of seconds); the
      // bound leaves room for a loaded 2-core machine
      assert.ok(ms < 3000, `took ${ms} ms to stop`);
      assert.deepEqual(readdirSync(d), []);
    });
  }

  test("SIGKILL leaves a temp file; the next write to the same path removes it", async () => {
    const d = join(dir, "kill");
    mkdirSync(d);
    const out = join(d, "c.gguf");
    const p = start(["convert", S3M, out, "--type", "Q4_K", "--backend", "ref"]);
    const done = exited(p);
    await writeBegun(d, "c.gguf", p);
    p.kill("SIGKILL");
    await done;
    assert.equal(temps(d, "c.gguf").length, 1);
    assert.ok(!existsSync(out));
    const r = spawnSync(process.execPath, [BIN, "convert", S260, out], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(d), ["c.gguf"]);
  });

  test("removeStaleTemps: dead writers' files and directories go, live writers' and other names stay", async () => {
    const d = join(dir, "stale");
    mkdirSync(d);
    const dead = deadPid();
    const sleeper = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"]);
    try {
      const files = {
        deadFile: `.m.gguf.tmp-${dead}-abc-0`,
        deadDir: `.out.tmp-${dead}-abc-1`,
        liveFile: `.m.gguf.tmp-${sleeper.pid}-abc-2`,
        otherName: `.n.gguf.tmp-${dead}-abc-3`,
        notOurs: `.m.gguf.tmp-x-4`,
      };
      for (const [k, f] of Object.entries(files)) {
        if (k === "deadDir") { mkdirSync(join(d, f)); writeFileSync(join(d, f, "config.json"), "{}"); } else writeFileSync(join(d, f), "partial");
      }
      await atomicWriteFile(join(d, "m.gguf"), (s) => s.write(new Uint8Array([1, 2, 3])));
      await atomicWriteDir(join(d, "out"), async () => undefined);
      assert.deepEqual(readdirSync(d).sort(), [files.liveFile, files.notOurs, files.otherName, "m.gguf", "out"].sort());
      assert.equal(statSync(join(d, "m.gguf")).size, 3);
      assert.deepEqual(removeStaleTemps(join(d, "m.gguf")), []);
    } finally {
      sleeper.kill();
    }
  });
});

test("FileSink flushes in the background every flushBytes while writes go on; settle waits; the bytes are the chunks in order", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-sink-"));
  try {
    const path = join(dir, "out.bin");
    const fd = openSync(path, "w");
    const sink = new FileSink(fd, path, 1000);
    const want = new Uint8Array(10_000);
    for (let i = 0; i < want.length; i++) want[i] = (i * 7 + 3) & 0xff;
    // writes go on while a flush is in flight (never two at once); settling lets the next one start
    for (let o = 0; o < 2800; o += 700) await sink.write(want.subarray(o, o + 700));
    assert.ok(sink.flushes >= 1 && sink.flushes <= 2, `${sink.flushes} flushes`);
    for (let o = 2800; o < want.length; o += 700) {
      await sink.settle();
      await sink.write(want.subarray(o, Math.min(want.length, o + 700)));
    }
    await sink.settle();
    closeSync(fd);
    assert.ok(sink.flushes >= 3 && sink.flushes <= 10, `${sink.flushes} flushes`);
    assert.equal(sink.bytes, want.length);
    assert.deepEqual(new Uint8Array(readFileSync(path)), want);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Bytes 0..n-1 of a fixed pseudo-random sequence. */
function pattern(n: number, seed: number): Uint8Array {
  const u = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; u[i] = x >>> 24; }
  return u;
}

test("DirectFileSink (O_DIRECT): chunks of any size and alignment, not awaited one by one, land in order; the padded tail is cut to the size", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-direct-"));
  try {
    for (const [total, slot, slots] of [[0, DIRECT_ALIGN, 2], [5, DIRECT_ALIGN, 2], [3 * DIRECT_ALIGN, DIRECT_ALIGN, 2], [100_003, 2 * DIRECT_ALIGN, 3], [250_001, DIRECT_ALIGN, 1]] as const) {
      const path = join(dir, `out-${total}.bin`);
      const fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_DIRECT, 0o644);
      const sink = new DirectFileSink(fd, path, () => openSync(path, "r+"), slot, slots);
      const want = pattern(total, total + 1);
      const pending: Promise<void>[] = [];
      // odd chunk sizes, some larger than a slot; half of them written without waiting for the one before
      for (let o = 0, k = 0; o < total; k++) {
        const n = Math.min(total - o, [1, 31, 4097, 7, 9000, 333][k % 6]!);
        const p = sink.write(want.slice(o, o + n));
        if (k % 2) pending.push(p); else await p;
        o += n;
      }
      await Promise.all(pending);
      await sink.finish();
      closeSync(fd);
      const fb = sink.fallbackDescriptor();
      if (fb !== undefined) closeSync(fb);
      assert.equal(sink.bytes, total);
      assert.equal(sink.fallbackWrites, 0, "every staged write is aligned");
      assert.equal(statSync(path).size, total);
      assert.deepEqual(new Uint8Array(readFileSync(path)), want);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("DirectFileSink: a failed write is an E_IO error at the next write or at finish, naming the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-direct-"));
  try {
    const path = join(dir, "ro.bin");
    writeFileSync(path, "");
    const fd = openSync(path, "r"); // writes fail with EBADF
    const sink = new DirectFileSink(fd, path, () => openSync(path, "r+"), DIRECT_ALIGN, 1);
    await sink.write(new Uint8Array(DIRECT_ALIGN)); // staged, then written in the background
    await assert.rejects(sink.write(new Uint8Array(10)), (e: Error & { code?: string }) => e.code === "E_IO" && e.message.includes(path));
    await assert.rejects(sink.finish(), /write failed/);
    closeSync(fd);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("atomicWriteFile({ direct }): the file is the bytes written, the temp file gone; an error in the writer leaves nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ql-direct-"));
  try {
    const path = join(dir, "m.gguf");
    const want = pattern(3 * 2 ** 20 + 17, 9);
    const n = await atomicWriteFile(path, async (s) => { await s.write(want.subarray(0, 1000)); await s.write(want.subarray(1000)); return 7; }, { direct: true });
    assert.equal(n, 7);
    assert.deepEqual(new Uint8Array(readFileSync(path)), want);
    assert.deepEqual(readdirSync(dir), ["m.gguf"]);
    const other = join(dir, "n.gguf");
    await assert.rejects(atomicWriteFile(other, async (s) => { await s.write(want); throw new Error("boom"); }, { direct: true }), /boom/);
    assert.deepEqual(readdirSync(dir), ["m.gguf"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
