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
