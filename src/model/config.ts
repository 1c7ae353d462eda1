/**
 * Hyper-parameters of a Llama-family model. Internally Q/K rows use the interleaved-pair RoPE
 * convention of llama2.c and GGUF's `llama` architecture; HF loaders permute Q/K rows on the way in
 * (and writers on the way out), as llama.cpp's converter does.
 */
export interface RopeScalingLlama3 {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  arch: "llama";
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** dim / nHeads unless the checkpoint says otherwise */
  headDim: number;
  vocabSize: number;
  /** context length the model was trained at */
  seqLen: number;
  ropeTheta: number;
  normEps: number;
  /** output projection shares the token embedding */
  tiedEmbeddings: boolean;
  ropeScaling?: RopeScalingLlama3;
  /** free-form name for reports */
  name?: string;
}

/** Canonical tensor names (GGUF `llama` naming). Linear weights are (nOut, nIn) row-major. */
export const TensorNames = {
  tokenEmbd: "token_embd.weight", // (vocab, dim)
  outputNorm: "output_norm.weight", // (dim)
  output: "output.weight", // (vocab, dim), absent when tied
  attnNorm: (l: number) => `blk.${l}.attn_norm.weight`, // (dim)
  attnQ: (l: number) => `blk.${l}.attn_q.weight`, // (nHeads*headDim, dim)
  attnK: (l: number) => `blk.${l}.attn_k.weight`, // (nKvHeads*headDim, dim)
  attnV: (l: number) => `blk.${l}.attn_v.weight`, // (nKvHeads*headDim, dim)
  attnOutput: (l: number) => `blk.${l}.attn_output.weight`, // (dim, nHeads*headDim)
  ffnNorm: (l: number) => `blk.${l}.ffn_norm.weight`, // (dim)
  ffnGate: (l: number) => `blk.${l}.ffn_gate.weight`, // (hiddenDim, dim)  llama2.c w1
  ffnDown: (l: number) => `blk.${l}.ffn_down.weight`, // (dim, hiddenDim)  llama2.c w2
  ffnUp: (l: number) => `blk.${l}.ffn_up.weight`, // (hiddenDim, dim)    llama2.c w3
} as const;

/** One transformer block's tensors: norms as N, linears as M (llama2.c: gate w1, down w2, up w3). */
export interface BlockTensors<N, M> {
  attnNorm: N;
  wq: M;
  wk: M;
  wv: M;
  wo: M;
  ffnNorm: N;
  gate: M;
  up: M;
  down: M;
}

/** Block l's tensors, each looked up by its canonical name through `norm` or `linear`. */
export function blockTensors<N, M>(l: number, norm: (name: string) => N, linear: (name: string) => M): BlockTensors<N, M> {
  return {
    attnNorm: norm(TensorNames.attnNorm(l)),
    wq: linear(TensorNames.attnQ(l)),
    wk: linear(TensorNames.attnK(l)),
    wv: linear(TensorNames.attnV(l)),
    wo: linear(TensorNames.attnOutput(l)),
    ffnNorm: norm(TensorNames.ffnNorm(l)),
    gate: linear(TensorNames.ffnGate(l)),
    up: linear(TensorNames.ffnUp(l)),
    down: linear(TensorNames.ffnDown(l)),
  };
}

/** Expected shape of every tensor of a config, in canonical names. */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  m.set(TensorNames.tokenEmbd, [c.vocabSize, c.dim]);
  m.set(TensorNames.outputNorm, [c.dim]);
  if (!c.tiedEmbeddings) m.set(TensorNames.output, [c.vocabSize, c.dim]);
  for (let l = 0; l < c.nLayers; l++) {
    m.set(TensorNames.attnNorm(l), [c.dim]);
    m.set(TensorNames.attnQ(l), [qDim, c.dim]);
    m.set(TensorNames.attnK(l), [kvDim, c.dim]);
    m.set(TensorNames.attnV(l), [kvDim, c.dim]);
    m.set(TensorNames.attnOutput(l), [c.dim, qDim]);
    m.set(TensorNames.ffnNorm(l), [c.dim]);
    m.set(TensorNames.ffnGate(l), [c.hiddenDim, c.dim]);
    m.set(TensorNames.ffnDown(l), [c.dim, c.hiddenDim]);
    m.set(TensorNames.ffnUp(l), [c.hiddenDim, c.dim]);
  }
  return m;
}
