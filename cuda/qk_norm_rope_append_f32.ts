// qk_norm_rope_append_f32: for each of the step's T tokens, RMSNorm every q head and k head over
// headDim (weights qNorm / kNorm), rotate both with RoPE at position pos + t, write q back in place
// (f32) and k, v into the KV cache at that position (f16 cache; q, k, v, sums are f32).
//
// RoPE is the "rotate half" form: pairs (i, i + D/2). The angle is computed exactly like the CPU
// reference: the f32 product float(pos) * invFreq[i], then accurate cosf / sinf (NOT __cosf: angles
// reach ~65536 rad with YaRN at long positions), each times attentionFactor (1 unless YaRN).
//
// Thread -> data mapping: grid (T, nHeads + nKv); block = D/2 threads; thread i owns the pair
// (i, i + D/2) of one head. Blocks y < nHeads are q heads, the rest k heads (which also copy the
// matching v head into the cache). The head's sum of squares is a block reduction.
// pos comes from the step buffer (step[0]).

import { COMMON, type KernelFile } from "./common.ts";

export const qk_norm_rope_append_f32: KernelFile = {
  file: "qk_norm_rope_append_f32",
  kernels: ["qk_norm_rope_append_f32"],
  source: COMMON + /* cuda */ `
extern "C" __global__ void qk_norm_rope_append_f32(
    float* q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ qn, const float* __restrict__ kn, const float* __restrict__ invFreq,
    u16* kc, u16* vc, const int* __restrict__ step, int nH, int nKv, int D, float eps, float attnFactor) {
  __shared__ float sh[32];
  const int t = blockIdx.x, h = blockIdx.y, i = threadIdx.x, half = D >> 1;
  // before the PDL wait: what no kernel writes (the norm weights, the RoPE table, and the position:
  // step is written by a copy before the step's first kernel), and the angle's cos / sin
  const int pos = step[STEP_POS] + t;
  const bool isQ = h < nH;
  const int kh = h - nH;
  const float* wn = isQ ? qn : kn;
  const float w1 = wn[i], w2 = wn[i + half];
  const float angle = (float)pos * invFreq[i];
  const float c = cosf(angle) * attnFactor, s = sinf(angle) * attnFactor;
  PDL_WAIT(); PDL_LAUNCH();
  const float* src = isQ ? q + ((size_t)t * nH + h) * D : k + ((size_t)t * nKv + kh) * D;
  const float x1 = src[i], x2 = src[i + half];
  const float ss = block_sum(x1 * x1 + x2 * x2, sh);
  const float inv = 1.0f / sqrtf(ss / (float)D + eps);
  const float y1 = x1 * inv * w1, y2 = x2 * inv * w2;
  const float o1 = y1 * c - y2 * s, o2 = y2 * c + y1 * s;
  if (isQ) {
    float* dst = q + ((size_t)t * nH + h) * D;
    dst[i] = o1; dst[i + half] = o2;
  } else {
    const size_t at = ((size_t)pos * nKv + kh) * D;
    kc[at + i] = f2h(o1); kc[at + i + half] = f2h(o2);
    const float* vs = v + ((size_t)t * nKv + kh) * D;
    vc[at + i] = f2h(vs[i]); vc[at + i + half] = f2h(vs[i + half]);
  }
}
`,
};
