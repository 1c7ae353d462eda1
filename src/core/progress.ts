/**
 * Progress reporting without Node dependencies. Library code takes an optional `Progress`; the CLI
 * passes one that draws a bar on stderr, tests and the browser pass nothing (or their own).
 */
export interface Progress {
  /** Starts (or restarts) a task of `total` units with a label. */
  start(total: number, label: string): void;
  /** Advances by `n` units (default 1). */
  tick(n?: number): void;
  /** Ends the current task. */
  done(): void;
}

export const noProgress: Progress = {
  start() {},
  tick() {},
  done() {},
};

/**
 * Lets the host's event loop run once (a macrotask, not a microtask): timers, I/O callbacks and signal
 * handlers (Ctrl-C / SIGTERM during a long write) get their turn between units of synchronous work.
 * `await Promise.resolve()` would not: microtasks run before the loop turns.
 */
export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  return new Promise((resolve) => (g.setImmediate ? g.setImmediate(resolve) : setTimeout(resolve, 0)));
}
