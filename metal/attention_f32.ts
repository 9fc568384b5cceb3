// attention_partial_f32 + attention_combine_f32: causal GQA attention of f32 queries over the f16
// KV cache (f32 math and sums), for decode (T = 1) and prefill (T > 1) alike.
// MSL twin of cuda/attention_f32.ts. Query t of the step sits at position pos + t and sees cache
// positions 0 .. pos + t (len = pos + t + 1). Query head h reads kv head h / (nHeads / nKv).
// Scores are dot(q, k) * headDim^-0.5.
//
// Stage 1, attention_partial_f32: grid (S, nHeads, T), threadgroup 128 threads (4 simdgroups).
// Threadgroup (s, h, t) covers positions [s*256, min(len, s*256 + 256)); groups wholly past len exit.
// S = ceil(ctx / 256) is fixed by the cache size, so one encoded step serves every position.
// Simdgroup w takes positions p = start + w, + 4, ...; lane l holds q dims l, l + 32, ... (D / 32
// each, D <= 256). Per position: dot via warp_sum, then an online softmax (running max m, running
// sum l, acc[d] rescaled by exp(m_old - m_new)). The 4 simdgroups merge through threadgroup memory
// and the threadgroup writes its partial [m, l, acc[0..D-1]] to part[t][h][s].
// Stage 2, attention_combine_f32: grid (nHeads, T), threadgroup D threads; thread d merges the
// ceil(len / 256) partials: M = max m_s, out[d] = sum acc_s[d] e^(m_s - M) / sum l_s e^(m_s - M).
// exp is precise::exp: exp(-inf) must be exactly 0 for the first position's rescale.

import { COMMON, type KernelFile } from "./common.ts";

export const ATT_CHUNK = 256;

export const attention_f32: KernelFile = {
  file: "attention_f32",
  kernels: ["attention_partial_f32", "attention_combine_f32"],
  source: COMMON + /* metal */ `
#define CHUNK ${ATT_CHUNK}
#define WARPS 4
#define MAXDPL 8
kernel void attention_partial_f32(
    device const float* q [[buffer(0)]], device const u16* kc [[buffer(1)]], device const u16* vc [[buffer(2)]],
    device float* part [[buffer(3)]], device const int* step [[buffer(4)]],
    constant int& nH [[buffer(5)]], constant int& nKv [[buffer(6)]], constant int& D [[buffer(7)]],
    constant int& S [[buffer(8)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]],
    uint3 bdim3 [[threads_per_threadgroup]]) {
  // position builtins are all uint3 here: MSL wants one vector width across them
  const uint tid = tid3.x, bdim = bdim3.x;
  threadgroup float sm[WARPS], sl[WARPS];
  threadgroup float sacc[WARPS][MAXDPL * 32];
  const int s = int(bid.x), h = int(bid.y), t = int(bid.z);
  const int len = step[STEP_POS] + t + 1;
  const int p0 = s * CHUNK;
  if (p0 >= len) return;
  const int p1 = min(len, p0 + CHUNK);
  const int lane = int(tid & 31), warp = int(tid >> 5), dpl = D >> 5;
  const int kvh = h / (nH / nKv);
  const ulong stride = (ulong)nKv * D;
  const float scale = precise::rsqrt((float)D);
  device const float* qp = q + ((ulong)t * nH + h) * D;
  float qr[MAXDPL], acc[MAXDPL];
  #pragma unroll
  for (int j = 0; j < MAXDPL; j++) { qr[j] = j < dpl ? qp[lane + 32 * j] : 0.f; acc[j] = 0.f; }
  float m = NEG_INF, l = 0.f;
  for (int p = p0 + warp; p < p1; p += WARPS) {
    device const u16* kp = kc + p * stride + kvh * D;
    device const u16* vp = vc + p * stride + kvh * D;
    float dot = 0.f;
    #pragma unroll
    for (int j = 0; j < MAXDPL; j++) if (j < dpl) dot += qr[j] * h2f(kp[lane + 32 * j]);
    dot = warp_sum(dot) * scale;
    const float mn = fmax(m, dot);
    const float corr = precise::exp(m - mn), e = precise::exp(dot - mn);
    l = l * corr + e;
    #pragma unroll
    for (int j = 0; j < MAXDPL; j++) if (j < dpl) acc[j] = acc[j] * corr + e * h2f(vp[lane + 32 * j]);
    m = mn;
  }
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
  #pragma unroll
  for (int j = 0; j < MAXDPL; j++) if (j < dpl) sacc[warp][lane + 32 * j] = acc[j];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float M = sm[0];
  #pragma unroll
  for (int w = 1; w < WARPS; w++) M = fmax(M, sm[w]);
  device float* dst = part + (((ulong)t * nH + h) * S + s) * (D + 2);
  for (int d = int(tid); d < D; d += int(bdim)) {
    float a = 0.f;
    #pragma unroll
    for (int w = 0; w < WARPS; w++) if (sl[w] > 0.f) a += sacc[w][d] * precise::exp(sm[w] - M);
    dst[2 + d] = a;
  }
  if (tid == 0) {
    float L = 0.f;
    #pragma unroll
    for (int w = 0; w < WARPS; w++) if (sl[w] > 0.f) L += sl[w] * precise::exp(sm[w] - M);
    dst[0] = M; dst[1] = L;
  }
}

kernel void attention_combine_f32(device const float* part [[buffer(0)]], device float* out [[buffer(1)]],
                                  device const int* step [[buffer(2)]], constant int& nH [[buffer(3)]],
                                  constant int& D [[buffer(4)]], constant int& S [[buffer(5)]],
                                  uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  // position builtins are all uint3 here: MSL wants one vector width across them
  const uint tid = tid3.x;
  const int h = int(bid.x), t = int(bid.y), d = int(tid);
  const int len = step[STEP_POS] + t + 1;
  const int ns = (len + CHUNK - 1) / CHUNK;
  device const float* base = part + ((ulong)t * nH + h) * S * (D + 2);
  float M = NEG_INF;
  for (int s = 0; s < ns; s++) M = fmax(M, base[(ulong)s * (D + 2)]);
  float L = 0.f, a = 0.f;
  for (int s = 0; s < ns; s++) {
    device const float* p = base + (ulong)s * (D + 2);
    const float e = precise::exp(p[0] - M);
    L += p[1] * e;
    a += p[2 + d] * e;
  }
  out[((ulong)t * nH + h) * D + d] = a / L;
}
`,
};
