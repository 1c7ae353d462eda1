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
