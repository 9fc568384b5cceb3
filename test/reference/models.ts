// The checkpoints the transformers fixtures were computed from: rebuilt deterministically by the
// tests (same spec, same seed) so no weights are committed.

import { PRESETS, type ModelSpec } from "../../src/model/make.ts";

export const REFERENCE_MODELS: Record<string, { spec: ModelSpec; seed: number; prompt: number[] }> = {
  // tied embeddings, no rope scaling, head_dim = hidden / heads
  "tiny-tied": { spec: PRESETS.tiny!, seed: 1, prompt: [785, 6722, 315, 9625, 374, 12095, 11, 323, 279, 6722, 315, 9856, 374, 19846, 13, 576, 14002, 315, 4017, 374, 9255, 13, 28253, 374] },
  // untied LM head, YaRN, head_dim (128) != hidden / heads (64), intermediate not a multiple of 256,
  // and max_position_embeddings / original (8) != factor (4), which pins transformers' choice.
  "yarn-untied": {
    spec: { hidden: 256, layers: 2, heads: 4, kvHeads: 2, headDim: 128, intermediate: 384, vocab: 151669, tied: false, yarn: { factor: 4, original: 64 }, maxPositions: 512 },
    seed: 2,
    prompt: Array.from({ length: 80 }, (_, i) => (i * 7919 + 13) % 151000),
  },
};
