/**
 * Blobs (a browser File, a slice of one, a download being built) behind the ByteSource and DirSource
 * interfaces, so the same readers that parse files in Node parse what a person picks in the browser lab.
 *
 * Each read takes a `Blob.slice` of just the bytes asked for: a multi-gigabyte file is never copied whole
 * into the JS heap. Lazily loaded weights (io/lazy.ts) need synchronous reads; a Web Worker has
 * FileReaderSync for that, so there the source offers `readIntoSync` and tensors are read on first use.
 * Where FileReaderSync does not exist (a page's main thread, Node) the source is asynchronous only, and
 * TensorStore.finishLoad reads the tensors at load instead. Isomorphic: Blob is a global in browsers and
 * Node ≥ 18; FileReaderSync is looked up at run time.
 */
import { QuantlabError } from "../core/errors.js";
import type { ByteSink } from "./gguf.js";
import type { DirSource } from "./hf.js";
import { checkRange, type ByteSource } from "./source.js";

/** The part of the Web Workers API this file uses (lib.dom does not declare it; lib.webworker does). */
interface FileReaderSyncLike {
  readAsArrayBuffer(blob: Blob): ArrayBuffer;
}
type FileReaderSyncCtor = new () => FileReaderSyncLike;

function fileReaderSync(): FileReaderSyncCtor | undefined {
  const c = (globalThis as { FileReaderSync?: FileReaderSyncCtor }).FileReaderSync;
  return typeof c === "function" ? c : undefined;
}

export class BlobSource implements ByteSource {
  readonly size: number;
  /** present only where the engine can read a Blob synchronously (Web Workers) */
  readonly readIntoSync?: (offset: number, dst: Uint8Array) => void;
  private closed = false;

  constructor(readonly name: string, private readonly blob: Blob, opts: { sync?: boolean } = {}) {
    this.size = blob.size;
    const Sync = opts.sync === false ? undefined : fileReaderSync();
    if (Sync) {
      // one reader per source: FileReaderSync holds no state between calls
      const reader = new Sync();
      this.readIntoSync = (offset, dst) => {
        this.check(offset, dst.length);
        dst.set(new Uint8Array(reader.readAsArrayBuffer(this.blob.slice(offset, offset + dst.length))));
      };
    }
  }

  private check(offset: number, length: number): void {
    if (this.closed) throw new QuantlabError("E_IO", `${this.name}: file already closed`);
    checkRange(this, offset, length);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length);
    const b = new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
    if (b.length !== length) throw new QuantlabError("E_FORMAT", `${this.name}: truncated: short read at byte ${offset + b.length}`);
    return b;
  }

  async readInto(offset: number, dst: Uint8Array): Promise<void> {
    if (this.readIntoSync) this.readIntoSync(offset, dst);
    else dst.set(await this.read(offset, dst.length));
  }

  async close(): Promise<void> {
    // the Blob itself belongs to the page; closing only stops further reads through this source
    this.closed = true;
  }
}

/** A folder the person picked (a Hugging Face directory: config.json, shards, tokenizer.json) as a DirSource. */
export class BlobDir implements DirSource {
  private readonly files: Map<string, Blob>;

  /** `files`: file name (inside the folder, no directory part) → its contents */
  constructor(readonly name: string, files: Iterable<[string, Blob]>) {
    this.files = new Map(files);
  }

  async has(file: string): Promise<boolean> {
    return this.files.has(file);
  }

  private get(file: string): Blob {
    const b = this.files.get(file);
    if (!b) throw new QuantlabError("E_IO", `${this.name}/${file}: no such file in the chosen folder`);
    return b;
  }

  async readText(file: string): Promise<string> {
    return this.get(file).text();
  }

  async open(file: string): Promise<ByteSource> {
    return new BlobSource(`${this.name}/${file}`, this.get(file));
  }

  async list(): Promise<string[]> {
    return [...this.files.keys()];
  }
}

/** Collects a writer's output in memory chunks and hands it over as one Blob (the browser lab's downloads). */
export class BlobSink implements ByteSink {
  private readonly parts: Uint8Array<ArrayBuffer>[] = [];
  bytes = 0;

  async write(chunk: Uint8Array): Promise<void> {
    // writers may reuse their buffers after the call: keep a copy
    this.parts.push(chunk.slice());
    this.bytes += chunk.length;
  }

  toBlob(type = "application/octet-stream"): Blob {
    return new Blob(this.parts, { type });
  }
}
