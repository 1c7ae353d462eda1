/** Node file access behind the ByteSource interface. */
import { openSync, closeSync, fstatSync, readSync, existsSync, statSync } from "node:fs";
import { QuantlabError } from "../../core/errors.js";
import { checkRange, type ByteSource } from "../source.js";

export class FileSource implements ByteSource {
  private fd: number | undefined;
  readonly size: number;

  constructor(readonly name: string) {
    if (!existsSync(name)) throw new QuantlabError("E_IO", `${name}: no such file`);
    if (statSync(name).isDirectory()) throw new QuantlabError("E_IO", `${name}: is a directory, expected a file`);
    try {
      this.fd = openSync(name, "r");
    } catch (e) {
      throw new QuantlabError("E_IO", `${name}: cannot open (${(e as Error).message})`);
    }
    this.size = fstatSync(this.fd).size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    return this.readSync(offset, length);
  }

  readSync(offset: number, length: number): Uint8Array {
    const dst = new Uint8Array(length);
    this.readIntoSync(offset, dst);
    return dst;
  }

  async readInto(offset: number, dst: Uint8Array): Promise<void> {
    this.readIntoSync(offset, dst);
  }

  readIntoSync(offset: number, dst: Uint8Array): void {
    checkRange(this, offset, dst.length);
    if (this.fd === undefined) throw new QuantlabError("E_IO", `${this.name}: file already closed`);
    let done = 0;
    while (done < dst.length) {
      const n = readSync(this.fd, dst, done, dst.length - done, offset + done);
      if (n <= 0) throw new QuantlabError("E_FORMAT", `${this.name}: truncated: short read at byte ${offset + done}`);
      done += n;
    }
  }

  async close(): Promise<void> {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export function openFile(path: string): FileSource {
  return new FileSource(path);
}
