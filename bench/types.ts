// Contract for bench files: bench/<name>.ts exports `run(ctx)` returning sections that bench/run.ts
// prints and writes into BENCHMARKS.md (one "## title" with a table and notes per section).
export interface BenchTable {
  headers: string[];
  rows: (string | number)[][];
}

export interface BenchSection {
  title: string;
  table: BenchTable;
  /** lines printed under the table (method, caveats, peers) */
  notes?: string[];
}

export interface BenchContext {
  /** "quick" shrinks sizes and repetitions (CI smoke run: `node dist/bench/run.js --quick`) */
  quick: boolean;
  machine: MachineInfo;
  /** section names asked for on the command line (`name:section,…`); empty = all */
  sections?: string[];
  log(msg: string): void;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memGiB: number;
  node: string;
  v8: string;
  load: string;
}

export type BenchFile = { run(ctx: BenchContext): Promise<BenchSection[]> };

/** Median and minimum of a list of numbers. */
export function stats(xs: number[]): { median: number; min: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]! };
}

export function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "—";
}
