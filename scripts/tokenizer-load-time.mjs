// Load time of a synthetic 128,000-entry byte-level BPE tokenizer.json (docs/robustness.md: the cost of
// validating and probing it at load). Usage: node scripts/tokenizer-load-time.mjs <dist dir of a build>
const { HfTokenizer } = await import(process.argv[2] + "/src/model/tokenizers/hf.js");
const vocab = {}; const merges = [];
const chars = "abcdefghijklmnopqrstuvwxyzĠ";
let id = 0;
for (const c of chars) vocab[c] = id++;
while (id < 128000) { const p = "Ġ" + id.toString(36); vocab[p] = id++; }
for (let i = 0; i < 100000; i++) merges.push(`Ġ ${i.toString(36)}`);
const json = { version: "1.0", added_tokens: [], normalizer: null, pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }, post_processor: null, decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true }, model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges } };
for (let k = 0; k < 3; k++) { const t0 = performance.now(); new HfTokenizer(json, {}, "big.json", 0); console.log(process.argv[2], "load ms", (performance.now() - t0).toFixed(0)); }
