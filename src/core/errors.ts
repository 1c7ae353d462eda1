/** Typed errors. The CLI prints `message` on one line (no stack unless --verbose) and exits non-zero. */
export type ErrorCode =
  | "E_IO" // file missing, unreadable, short read
  | "E_FORMAT" // bad magic, truncated header, inconsistent sizes
  | "E_UNSUPPORTED" // valid file, but an architecture/dtype we do not handle
  | "E_SPEC" // bad quantization spec or impossible combination
  | "E_ARG" // bad CLI/library argument
  | "E_VALUE" // NaN/Inf or out-of-range data
  | "E_INTERNAL";

export class QuantlabError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "QuantlabError";
    this.code = code;
  }
}

export function fail(code: ErrorCode, message: string): never {
  throw new QuantlabError(code, message);
}

/** Throws E_INTERNAL when `cond` is false; for invariants, not for user input. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new QuantlabError("E_INTERNAL", message);
}

/**
 * An error raised while reading `file`, as a QuantlabError whose message names it: QuantlabErrors that
 * already name it pass through, others get the name in front, and anything else (an exception from a
 * dependency, a RangeError from a runaway structure) becomes E_FORMAT with its text, the original kept
 * as `cause`. Used at the boundary where a reader hands its result to a caller.
 */
export function namingFile(e: unknown, file: string): QuantlabError {
  if (e instanceof QuantlabError) {
    if (e.message.includes(file)) return e;
    return new QuantlabError(e.code, `${file}: ${e.message}`, { cause: e });
  }
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new QuantlabError("E_FORMAT", `${file}: cannot read the file (${msg.length > 200 ? `${msg.slice(0, 197)}...` : msg})`, { cause: e });
}

/** Awaits `f()`, turning whatever it throws into `namingFile(e, file)`. */
export async function readingFile<T>(file: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw namingFile(e, file);
  }
}
