// RoPE inverse frequencies, default or YaRN, as transformers' modeling_rope_utils computes them
// (f32 tensors there, so every value here is rounded to f32 at the same steps).

import type { ModelConfig } from "../io/config.ts";
import type { RopeSpec } from "../backend/backend.ts";

const f = Math.fround;

export function ropeSpec(cfg: ModelConfig): RopeSpec {
  const dim = cfg.headDim, base = cfg.ropeTheta, half = dim / 2;
  // pos_freqs = base ** (arange(0, dim, 2) / dim), in f32
  const posFreqs = new Float32Array(half);
  for (let i = 0; i < half; i++) posFreqs[i] = f(Math.pow(base, f(f(2 * i) / dim)));
  const invFreq = new Float32Array(half);
  const rs = cfg.ropeScaling;
  if (!rs) {
    for (let i = 0; i < half; i++) invFreq[i] = f(1 / posFreqs[i]!);
    return { headDim: dim, invFreq, attentionFactor: 1 };
  }

  // transformers 5.x takes rope_scaling.factor as given (it only warns when max_position_embeddings /
  // original_max_position_embeddings disagrees); our fixture test pins this.
  const orig = rs.originalMaxPositionEmbeddings ?? cfg.maxPositionEmbeddings;
  const factor = rs.factor;
  const mscale = (s: number) => (s <= 1 ? 1 : 0.1 * Math.log(s) + 1);
  const attentionFactor = rs.attentionFactor ?? mscale(factor);

  const corrDim = (rot: number) => (dim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  let low = corrDim(rs.betaFast), high = corrDim(rs.betaSlow);
  if (rs.truncate) { low = Math.floor(low); high = Math.ceil(high); }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(Math.max(f(f(i - low) / f(high - low)), 0), 1);
    const extra = f(1 - ramp); // weight of the extrapolated (unscaled) frequency
    const inter = f(1 / f(factor * posFreqs[i]!)), extr = f(1 / posFreqs[i]!);
    invFreq[i] = f(f(inter * f(1 - extra)) + f(extr * extra));
  }
  return { headDim: dim, invFreq, attentionFactor };
}
