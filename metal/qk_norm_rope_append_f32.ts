// qk_norm_rope_append_f32: for each of the step's T tokens, RMSNorm every q head and k head over
// headDim (weights qNorm / kNorm), rotate both with RoPE at position pos + t, write q back in place
// (f32) and k, v into the KV cache at that position (f16 cache; q, k, v, sums are f32).
// MSL twin of cuda/qk_norm_rope_append_f32.ts.
//
// RoPE is the "rotate half" form: pairs (i, i + D/2). The angle is the f32 product
// float(pos) * invFreq[i], then precise::cos / precise::sin (Metal's default cos/sin may reduce the
// range sloppily; angles reach ~65536 rad with YaRN), each times attentionFactor (1 unless YaRN).
//
// Thread -> data mapping: grid (T, nHeads + nKv); threadgroup = D/2 threads; thread i owns the pair
// (i, i + D/2) of one head. Threadgroups y < nHeads are q heads, the rest k heads (which also copy
// the matching v head into the cache). The head's sum of squares is block_sum.
// pos comes from the step buffer (step[0]).

import { COMMON, type KernelFile } from "./common.ts";

export const qk_norm_rope_append_f32: KernelFile = {
  file: "qk_norm_rope_append_f32",
  kernels: ["qk_norm_rope_append_f32"],
  source: COMMON + /* metal */ `
kernel void qk_norm_rope_append_f32(
    device float* q [[buffer(0)]], device const float* k [[buffer(1)]], device const float* v [[buffer(2)]],
    device const float* qn [[buffer(3)]], device const float* kn [[buffer(4)]], device const float* invFreq [[buffer(5)]],
    device u16* kc [[buffer(6)]], device u16* vc [[buffer(7)]], device const int* step [[buffer(8)]],
    constant int& nH [[buffer(9)]], constant int& nKv [[buffer(10)]], constant int& D [[buffer(11)]],
    constant float& eps [[buffer(12)]], constant float& attnFactor [[buffer(13)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]],
    uint3 bdim3 [[threads_per_threadgroup]]) {
  // position builtins are all uint3 here: MSL wants one vector width across them
  const uint tid = tid3.x, bdim = bdim3.x;
  threadgroup float sh[32];
  const int t = int(bid.x), h = int(bid.y), i = int(tid), hd = D >> 1; // hd: CUDA's "half" (a type in MSL)
  // before PDL_WAIT (a no-op on Metal, kept at the CUDA twin's place): what no kernel writes, and
  // the angle's cos / sin
  const int pos = step[STEP_POS] + t;
  const bool isQ = h < nH;
  const int kh = h - nH;
  device const float* wn = isQ ? qn : kn;
  const float w1 = wn[i], w2 = wn[i + hd];
  const float angle = (float)pos * invFreq[i];
  const float c = precise::cos(angle) * attnFactor, s = precise::sin(angle) * attnFactor;
  PDL_WAIT(); PDL_LAUNCH();
  device const float* src = isQ ? q + ((ulong)t * nH + h) * D : k + ((ulong)t * nKv + kh) * D;
  const float x1 = src[i], x2 = src[i + hd];
  const float ss = block_sum(x1 * x1 + x2 * x2, sh, tid, bdim);
  const float inv = 1.0f / precise::sqrt(ss / (float)D + eps);
  const float y1 = x1 * inv * w1, y2 = x2 * inv * w2;
  const float o1 = y1 * c - y2 * s, o2 = y2 * c + y1 * s;
  if (isQ) {
    device float* dst = q + ((ulong)t * nH + h) * D;
    dst[i] = o1; dst[i + hd] = o2;
  } else {
    const ulong at = ((ulong)pos * nKv + kh) * D;
    kc[at + i] = f2h(o1); kc[at + i + hd] = f2h(o2);
    device const float* vs = v + ((ulong)t * nKv + kh) * D;
    vc[at + i] = f2h(vs[i]); vc[at + i + hd] = f2h(vs[i + hd]);
  }
}
`,
};
