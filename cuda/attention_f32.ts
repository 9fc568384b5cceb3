// attention_partial_f32 + attention_combine_f32: causal GQA attention of f32 queries over the f16
// KV cache (f32 math and sums), for decode (T = 1) and prefill (T > 1) alike. Query t of the step
// sits at position pos + t and sees cache positions 0 .. pos + t (len = pos + t + 1).
// Query head h reads kv head h / (nHeads / nKv). Scores are dot(q, k) * headDim^-0.5.
//
// Stage 1, attention_partial_f32: grid (S, nHeads, T), block 128 threads (4 warps).
// Block (s, h, t) covers positions [s*256, min(len, s*256 + 256)); blocks wholly past len exit.
// S = ceil(ctx / 256) is fixed by the cache size, so a captured graph serves every position.
// Warp w takes positions p = start + w, + 4, ...; lane l holds q dims l, l + 32, ... (D / 32 each,
// D <= 256). Per position: dot via warp reduction, then an online softmax (running max m, running
// sum l, acc[d] rescaled by exp(m_old - m_new)). The 4 warps merge through shared memory and the
// block writes its partial [m, l, acc[0..D-1]] to part[t][h][s].
// Stage 2, attention_combine_f32: grid (nHeads, T), block D threads; thread d merges the
// ceil(len / 256) partials: M = max m_s, out[d] = sum acc_s[d] e^(m_s - M) / sum l_s e^(m_s - M).

import { COMMON, type KernelFile } from "./common.ts";

export const ATT_CHUNK = 256;

export const attention_f32: KernelFile = {
  file: "attention_f32",
  kernels: ["attention_partial_f32", "attention_combine_f32"],
  source: COMMON + /* cuda */ `
#define CHUNK ${ATT_CHUNK}
#define WARPS 4
#define MAXDPL 8
extern "C" __global__ void __launch_bounds__(128) attention_partial_f32(
    const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc, float* __restrict__ part,
    const int* __restrict__ step, int nH, int nKv, int D, int S) {
  __shared__ float sm[WARPS], sl[WARPS];
  __shared__ float sacc[WARPS][MAXDPL * 32];
  const int s = blockIdx.x, h = blockIdx.y, t = blockIdx.z;
  const int len = step[STEP_POS] + t + 1;
  const int p0 = s * CHUNK;
  if (p0 >= len) return;
  const int p1 = min(len, p0 + CHUNK);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, dpl = D >> 5;
  const int kvh = h / (nH / nKv);
  const size_t stride = (size_t)nKv * D;
  const float scale = rsqrtf((float)D);
  const float* qp = q + ((size_t)t * nH + h) * D;
  float qr[MAXDPL], acc[MAXDPL];
  #pragma unroll
  for (int j = 0; j < MAXDPL; j++) { qr[j] = j < dpl ? qp[lane + 32 * j] : 0.f; acc[j] = 0.f; }
  float m = NEG_INF, l = 0.f;
  for (int p = p0 + warp; p < p1; p += WARPS) {
    const u16* kp = kc + p * stride + kvh * D;
    const u16* vp = vc + p * stride + kvh * D;
    float dot = 0.f;
    #pragma unroll
    for (int j = 0; j < MAXDPL; j++) if (j < dpl) dot += qr[j] * h2f(kp[lane + 32 * j]);
    dot = warp_sum(dot) * scale;
    const float mn = fmaxf(m, dot);
    const float corr = expf(m - mn), e = expf(dot - mn);
    l = l * corr + e;
    #pragma unroll
    for (int j = 0; j < MAXDPL; j++) if (j < dpl) acc[j] = acc[j] * corr + e * h2f(vp[lane + 32 * j]);
    m = mn;
  }
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
  #pragma unroll
  for (int j = 0; j < MAXDPL; j++) if (j < dpl) sacc[warp][lane + 32 * j] = acc[j];
  __syncthreads();
  float M = sm[0];
  #pragma unroll
  for (int w = 1; w < WARPS; w++) M = fmaxf(M, sm[w]);
  float* dst = part + (((size_t)t * nH + h) * S + s) * (D + 2);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float a = 0.f;
    #pragma unroll
    for (int w = 0; w < WARPS; w++) if (sl[w] > 0.f) a += sacc[w][d] * expf(sm[w] - M);
    dst[2 + d] = a;
  }
  if (threadIdx.x == 0) {
    float L = 0.f;
    #pragma unroll
    for (int w = 0; w < WARPS; w++) if (sl[w] > 0.f) L += sl[w] * expf(sm[w] - M);
    dst[0] = M; dst[1] = L;
  }
}

extern "C" __global__ void attention_combine_f32(const float* __restrict__ part, float* __restrict__ out,
                                                 const int* __restrict__ step, int nH, int D, int S) {
  const int h = blockIdx.x, t = blockIdx.y, d = threadIdx.x;
  const int len = step[STEP_POS] + t + 1;
  const int ns = (len + CHUNK - 1) / CHUNK;
  const float* base = part + ((size_t)t * nH + h) * S * (D + 2);
  float M = NEG_INF;
  for (int s = 0; s < ns; s++) M = fmaxf(M, base[(size_t)s * (D + 2)]);
  float L = 0.f, a = 0.f;
  for (int s = 0; s < ns; s++) {
    const float* p = base + (size_t)s * (D + 2);
    const float e = expf(p[0] - M);
    L += p[1] * e;
    a += p[2 + d] * e;
  }
  out[((size_t)t * nH + h) * D + d] = a / L;
}
`,
};
