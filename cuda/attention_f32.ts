// attention_partial_f32 + attention_combine_f32: causal GQA attention of f32 queries over the f16
// KV cache (f32 math and sums), for decode (T = 1) and prefill (T > 1) alike. Query t of the step
// sits at position pos + t and sees cache positions 0 .. pos + t (len = pos + t + 1).
// Query head h reads kv head h / G, G = nHeads / nKv. Scores are dot(q, k) * headDim^-0.5.
//
// Stage 1, attention_partial_f32: grid (S, nKv, T), block 128 threads (4 warps), S chunks of 32
// covering the part of the cache the step can reach (the host's attentionSpan: a power of two from
// 4096, so a captured graph serves many positions); blocks wholly past len exit.
// Block (s, kvh, t) covers positions [32 s, min(len, 32 s + 32)) for the G query heads of kv head
// kvh, so each K/V row is read once for all G heads.
// - A position is handled by LPP = D/8 lanes, each holding 8 dims (one 16-byte load of 8 halves):
//   a warp covers PPW = 32/LPP positions at once, the block PPB = 4*PPW; a thread's dims are
//   8*(lane % LPP) .. +7 and its positions p0 + it*PPB + warp*PPW + lane/LPP, it = 0 .. 32/PPB - 1.
//   D (64, 128, 256) and GM (1, 2, 4, 8: the smallest holding G) are template parameters, so these
//   loops unroll and every key (then value) load of the chunk is issued before the math using it.
// - Scores: per head, 8 products then a shuffle-xor reduction over the LPP lanes of the position;
//   stored in shared memory sc[g][32] (-inf past len).
// - Softmax of the chunk: warp w takes heads w, w + 4, ...: m = max, e = exp(s - m), l = sum e.
// - Values: each thread loads its V rows once and accumulates e * v for its 8 dims and all G heads
//   in registers; then the PPB position groups are summed through shared memory, all heads after
//   one barrier where they fit (G <= 4), else head by head.
//   The block writes [m, l, acc[0..D-1]] per head to part[t][h][s].
// Queries in sub-batches (the host's budget for the partials, ATT_PARTIALS_MAX): every kernel takes
// t0, the sub-batch's first query; q, part and out are the host's pointers to that sub-batch, so
// blockIdx (z, or y in the merges) is the query within it and len = pos + t0 + blockIdx + 1.
// Stage 2, attention_combine_f32: grid (nHeads, T), block D threads; thread d merges the
// ceil(len / 32) partials: M = max m_s, out[d] = sum acc_s[d] e^(m_s - M) / sum l_s e^(m_s - M).
// attention_combine_long_f32, the same merge for long sequences (the host takes it once a step ends
// past ATT_LONG positions): every thread of the serial merge computes every weight e^(m_s - M) and
// walks the partials twice, which at context 2k cost ~5 us a layer. Here M is a block reduction over
// partials spread across the threads; then, WCAP partials at a time, thread j writes the weights of
// partials j, j + QD, .. to shared memory (adding l_s w_s to its share of L); the block has QD
// threads, Q = min(8, 1024 / D) per dim, and thread (d, q) sums acc_s[d] w_s over s = q, q + Q, ..
// (Q times the loads in flight of one thread per dim); the Q sums meet in shared memory in a fixed
// order. Below ~1,000 positions its barriers cost more than they save (serial merge there).

import { COMMON, type KernelFile } from "./common.ts";

export const ATT_CHUNK = 32; // 32 beat 64 by 5 % on the 8B decode step at short context (H200), equal at 2k
/** A step that ends past this many positions merges its partials with attention_combine_long_f32.
 *  Replayed 8B step, serial / long merge, us per token (H200, 2026-11-22): context 517: 1,528 /
 *  1,542-1,550; 1,029: 1,626-1,632 / 1,567-1,621; 2,053: 1,983 / 1,752; 16,389: 6,145 / 3,900. */
export const ATT_LONG = 1024;
/** attention_combine_long_f32 runs up to ATT_LONG_QS threads per dim (at most 1024 in all):
 *  8 beat 4 by 2-9 % per token at 2k-16k context (H200). */
export const ATT_LONG_QS = 8;
/** Largest GQA group (query heads per kv head) the kernel holds in registers. */
export const ATT_MAX_GROUP = 8;

/** The serial merge of one query, head and dim from its ns chunk partials at base (stride D + 2):
 *  attention_combine_f32's body, and cuda/x16_fused.ts's attention_combine_x16_f32's. */
export const ATT_MERGE = /* cuda */ `
__device__ __forceinline__ float att_merge(const float* __restrict__ base, int ns, int D, int d) {
  float M = NEG_INF;
  for (int s = 0; s < ns; s++) M = fmaxf(M, base[(size_t)s * (D + 2)]);
  float L = 0.f, a = 0.f;
  for (int s = 0; s < ns; s++) {
    const float* p = base + (size_t)s * (D + 2);
    const float e = expf(p[0] - M);
    L += p[1] * e;
    a += p[2 + d] * e;
  }
  return a / L;
}
`;

export const attention_f32: KernelFile = {
  file: "attention_f32",
  kernels: ["attention_partial_f32", "attention_combine_f32", "attention_combine_long_f32"],
  source: COMMON + ATT_MERGE + /* cuda */ `
#define CHUNK ${ATT_CHUNK}
#define MAXG ${ATT_MAX_GROUP}
#define NT 128

template <int D, int GM>
__device__ __forceinline__ void attention_partial(
    const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc, float* __restrict__ part,
    int len, int P, int nH, int nKv, int S, float (*sc)[CHUNK], float* sm, float* sl, float (*red)[256 + 4]) {
  constexpr int LPP = D / 8, PPW = 32 / LPP, PPB = 4 * PPW, IT = CHUNK / PPB;
  const int s = blockIdx.x, kvh = blockIdx.y, t = blockIdx.z;
  const int p0 = s * CHUNK;
  const int G = nH / nKv, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane % LPP, d0 = 8 * sub, grp = warp * PPW + lane / LPP;
  const size_t stride = (size_t)nKv * D;
  const float scale = rsqrtf((float)D);

  // Key rows of positions before this step's (p < P) were written by earlier steps, so they are
  // loaded before waiting for the kernel before (PDL); this step's rows (qk_norm_rope_append wrote
  // them, the only kernel of the step that writes the cache) and q after.
  uint4 kw[IT];
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int p = p0 + it * PPB + grp;
    kw[it] = p < P ? *reinterpret_cast<const uint4*>(kc + p * stride + kvh * D + d0) : make_uint4(0, 0, 0, 0);
  }
  // Value rows of earlier steps go into L2 now, holding no registers: the value loads after the
  // softmax then find them there. One prefetch per 128-byte line (8 lanes of 16 bytes). A hint
  // only, with no Metal counterpart. 1.7B decode +0.8 %, 8B within noise (H200).
  if ((sub & 7) == 0) {
    #pragma unroll
    for (int it = 0; it < IT; it++) {
      const int p = p0 + it * PPB + grp;
      if (p < P) asm volatile("prefetch.global.L2 [%0];" :: "l"(vc + p * stride + kvh * D + d0));
    }
  }
  PDL_WAIT(); PDL_LAUNCH();
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int p = p0 + it * PPB + grp;
    if (p >= P && p < len) kw[it] = *reinterpret_cast<const uint4*>(kc + p * stride + kvh * D + d0);
  }
  float qr[GM][8];
  #pragma unroll
  for (int g = 0; g < GM; g++) {
    if (g < G) {
      const float4* qp = reinterpret_cast<const float4*>(q + ((size_t)t * nH + kvh * G + g) * D + d0);
      const float4 a = qp[0], b = qp[1];
      qr[g][0] = a.x; qr[g][1] = a.y; qr[g][2] = a.z; qr[g][3] = a.w;
      qr[g][4] = b.x; qr[g][5] = b.y; qr[g][6] = b.z; qr[g][7] = b.w;
    }
  }
  // scores for every position of the chunk
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int i = it * PPB + grp, p = p0 + i;
    const u32 kk[4] = {kw[it].x, kw[it].y, kw[it].z, kw[it].w};
    float kf[8];
    #pragma unroll
    for (int j = 0; j < 4; j++) { kf[2 * j] = h2f((u16)(kk[j] & 0xffff)); kf[2 * j + 1] = h2f((u16)(kk[j] >> 16)); }
    #pragma unroll
    for (int g = 0; g < GM; g++) {
      if (g < G) {
        float dot = 0.f;
        #pragma unroll
        for (int j = 0; j < 8; j++) dot += qr[g][j] * kf[j];
        #pragma unroll
        for (int o = LPP / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(FULL_MASK, dot, o);
        if (sub == 0) sc[g][i] = p < len ? dot * scale : NEG_INF;
      }
    }
  }
  __syncthreads();
  // softmax over the chunk, one warp per head
  for (int g = warp; g < G; g += NT / 32) {
    float v[CHUNK / 32], m = NEG_INF, l = 0.f;
    #pragma unroll
    for (int k = 0; k < CHUNK / 32; k++) { v[k] = sc[g][lane + 32 * k]; m = fmaxf(m, v[k]); }
    m = warp_max(m);
    #pragma unroll
    for (int k = 0; k < CHUNK / 32; k++) {
      const float e = v[k] == NEG_INF ? 0.f : expf(v[k] - m);
      sc[g][lane + 32 * k] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) { sm[g] = m; sl[g] = l; }
  }
  __syncthreads();
  // weighted values: each V row loaded once for all G heads (here, not with the keys: holding them
  // through the softmax took 128 -> 154 registers and prefill 4,150 -> 4,060 tok/s)
  uint4 vw[IT];
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int p = p0 + it * PPB + grp;
    vw[it] = p < len ? *reinterpret_cast<const uint4*>(vc + p * stride + kvh * D + d0) : make_uint4(0, 0, 0, 0);
  }
  float acc[GM][8];
  #pragma unroll
  for (int g = 0; g < GM; g++) {
    #pragma unroll
    for (int j = 0; j < 8; j++) acc[g][j] = 0.f;
  }
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int i = it * PPB + grp;
    const u32 vv[4] = {vw[it].x, vw[it].y, vw[it].z, vw[it].w};
    float vf[8];
    #pragma unroll
    for (int j = 0; j < 4; j++) { vf[2 * j] = h2f((u16)(vv[j] & 0xffff)); vf[2 * j + 1] = h2f((u16)(vv[j] >> 16)); }
    #pragma unroll
    for (int g = 0; g < GM; g++) {
      if (g < G) {
        const float e = sc[g][i]; // 0 past len
        #pragma unroll
        for (int j = 0; j < 8; j++) acc[g][j] += e * vf[j];
      }
    }
  }
  // sum the PPB position groups per head through shared memory; write [m, l, acc]
  float* dst = part + ((size_t)t * nH + kvh * G) * S * (D + 2) + (size_t)s * (D + 2);
  // When every head's sums fit red at once (row RS per position group: D = 64 / 128 / 256 up to
  // G = 4), one barrier for all heads; otherwise two per head. Replayed 8B decode step -2.3 to
  // -2.7 % at context 133-2,053 (H200): a 4-head block had waited on 8 barriers here.
  constexpr int RS = GM * D + 4;
  if (PPB * RS <= NT / 32 * 32 / 8 * (256 + 4)) {
    float* r0 = &red[0][0];
    #pragma unroll
    for (int g = 0; g < GM; g++) {
      if (g < G) {
        float4* w4 = reinterpret_cast<float4*>(r0 + grp * RS + g * D + d0);
        w4[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
        w4[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * D; i += NT) {
      float a = 0.f;
      #pragma unroll
      for (int r = 0; r < PPB; r++) a += r0[r * RS + i];
      dst[(size_t)(i / D) * S * (D + 2) + 2 + i % D] = a;
    }
    if (threadIdx.x < G) { float* out = dst + (size_t)threadIdx.x * S * (D + 2); out[0] = sm[threadIdx.x]; out[1] = sl[threadIdx.x]; }
    return;
  }
  #pragma unroll
  for (int g = 0; g < GM; g++) {
    if (g < G) {
      #pragma unroll
      for (int j = 0; j < 8; j++) red[grp][d0 + j] = acc[g][j];
      __syncthreads();
      float* out = dst + (size_t)g * S * (D + 2);
      for (int d = threadIdx.x; d < D; d += NT) {
        float a = 0.f;
        #pragma unroll
        for (int r = 0; r < PPB; r++) a += red[r][d];
        out[2 + d] = a;
      }
      if (threadIdx.x == 0) { out[0] = sm[g]; out[1] = sl[g]; }
      __syncthreads();
    }
  }
}

// At most 72 registers (7 blocks of 128 threads per SM), chosen by the largest instantiation otherwise
// (126: 4 blocks per SM). The Bonsai / Qwen3 shapes (D = 128, G = 2 or 4) fit in 72; D = 256 and
// G > 4 spill (0.1-2 KB: slower, still exact). H200, 2026-11-22: prefill attention 8B 13.4 -> 10.5 ms,
// 1.7B 6.4 -> 4.8 ms; 8B decode at 8k context 2,726 -> 2,529 us per token; short context unchanged.
extern "C" __global__ void __launch_bounds__(NT, 7) attention_partial_f32(
    const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc, float* __restrict__ part,
    const int* __restrict__ step, int nH, int nKv, int D, int S, int t0) {
  // (PDL_WAIT comes inside, after the loads that need none: step is written by a copy before the
  // step's first kernel, and a block past len touches nothing)
  __shared__ float sc[MAXG][CHUNK];
  __shared__ float sm[MAXG], sl[MAXG];
  __shared__ __align__(16) float red[NT / 32 * 32 / 8][256 + 4]; // [position group][dim], padded (16-byte rows: float4 stores)
  const int P = step[STEP_POS], len = P + t0 + blockIdx.z + 1;
  if ((int)blockIdx.x * CHUNK >= len) return; // the whole block: no barrier is skipped
  // GM: the smallest of 1, 2, 4, 8 holding the group G = nH / nKv (registers are sized by GM)
  const int G = nH / nKv;
#define ATT_CASE(DD, GG) if (D == DD && G <= GG) return attention_partial<DD, GG>(q, kc, vc, part, len, P, nH, nKv, S, sc, sm, sl, red);
#define ATT_D(DD) ATT_CASE(DD, 1) ATT_CASE(DD, 2) ATT_CASE(DD, 4) ATT_CASE(DD, 8)
  ATT_D(64) ATT_D(128) ATT_D(256)
#undef ATT_D
#undef ATT_CASE
}

extern "C" __global__ void attention_combine_f32(const float* __restrict__ part, float* __restrict__ out,
                                                 const int* __restrict__ step, int nH, int D, int S, int t0) {
  PDL_WAIT(); PDL_LAUNCH();
  const int h = blockIdx.x, t = blockIdx.y, d = threadIdx.x;
  const int len = step[STEP_POS] + t0 + t + 1;
  out[((size_t)t * nH + h) * D + d] = att_merge(part + ((size_t)t * nH + h) * S * (D + 2), (len + CHUNK - 1) / CHUNK, D, d);
}

#define WCAP 1024
#define QS ${ATT_LONG_QS}
// Q threads per dim, a template parameter so the summing loop's strides are constants (the
// runtime-Q version was 5-9 % slower per token at 16k context).
template <int Q>
__device__ __forceinline__ void combine_long(const float* __restrict__ part, float* __restrict__ out, int len, int h, int t,
                                             int nH, int D, int S, float* w, float* sh, float (*red)[256]) {
  const int tid = threadIdx.x, nt = blockDim.x, d = tid % D, q = tid / D;
  const int ns = (len + CHUNK - 1) / CHUNK;
  const size_t st = D + 2;
  const float* base = part + ((size_t)t * nH + h) * S * st;
  float m = NEG_INF;
  for (int s = tid; s < ns; s += nt) m = fmaxf(m, base[s * st]);
  const float M = block_max(m, sh);
  float l = 0.f, a0 = 0.f, a1 = 0.f;
  for (int s0 = 0; s0 < ns; s0 += WCAP) {
    const int n = min(WCAP, ns - s0);
    __syncthreads(); // every thread has read the previous chunk's weights
    for (int j = tid; j < n; j += nt) {
      const float* p = base + (s0 + j) * st;
      const float e = expf(p[0] - M);
      w[j] = e;
      l += p[1] * e;
    }
    __syncthreads();
    // thread (d, q) takes partials q, q + Q, ... of the chunk, in two chains
    const float* p = base + (s0 + q) * st + 2 + d;
    int j = q;
    for (; j + Q < n; j += 2 * Q, p += 2 * Q * st) { a0 += p[0] * w[j]; a1 += p[Q * st] * w[j + Q]; }
    if (j < n) a0 += p[0] * w[j];
  }
  const float L = block_sum(l, sh);
  const float a = a0 + a1;
  if (q > 0) red[q - 1][d] = a;
  __syncthreads();
  if (q == 0) {
    float v = a;
    #pragma unroll
    for (int r = 0; r < Q - 1; r++) v += red[r][d];
    out[((size_t)t * nH + h) * D + d] = v / L;
  }
}

extern "C" __global__ void __launch_bounds__(1024) attention_combine_long_f32(
    const float* __restrict__ part, float* __restrict__ out, const int* __restrict__ step, int nH, int D, int S, int t0) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ float w[WCAP];
  __shared__ float sh[32];
  __shared__ float red[QS - 1][256];
  const int len = step[STEP_POS] + t0 + blockIdx.y + 1, Q = blockDim.x / D; // the host launches Q = 8, 4 or 2
  if (Q == 8) combine_long<8>(part, out, len, blockIdx.x, blockIdx.y, nH, D, S, w, sh, red);
  else if (Q == 4) combine_long<4>(part, out, len, blockIdx.x, blockIdx.y, nH, D, S, w, sh, red);
  else combine_long<2>(part, out, len, blockIdx.x, blockIdx.y, nH, D, S, w, sh, red);
}
`,
};
