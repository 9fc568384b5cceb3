// attention_partial_f32 + attention_combine_f32: causal GQA attention of f32 queries over the f16
// KV cache (f32 math and sums), for decode (T = 1) and prefill (T > 1) alike. MSL twin of
// cuda/attention_f32.ts (same algorithm, mapping and dispatch). Query t of the step sits at
// position pos + t and sees cache positions 0 .. pos + t (len = pos + t + 1).
// Query head h reads kv head h / G, G = nHeads / nKv. Scores are dot(q, k) * headDim^-0.5.
//
// Stage 1, attention_partial_f32: grid (S, nKv, T), threadgroup 128 threads (4 simdgroups),
// S chunks of 32 covering the part of the cache the step can reach (the host's attentionSpan);
// threadgroups wholly past len exit. Threadgroup (s, kvh, t) covers positions
// [32 s, min(len, 32 s + 32)) for the G query heads of kv head kvh, so each K/V row is read once.
// - A position is handled by LPP = D/8 lanes, each holding 8 dims (one 16-byte load of 8 halves):
//   a simdgroup covers PPW = 32/LPP positions at once, the threadgroup PPB = 4*PPW; a thread's dims
//   are 8*(lane % LPP) .. +7 and its positions p0 + it*PPB + warp*PPW + lane/LPP, it < 32/PPB.
//   D (64, 128, 256) and GM (1, 2, 4, 8: the smallest holding G) are template parameters.
// - Scores: per head, 8 products then a shuffle-xor reduction over the LPP lanes of the position;
//   stored in threadgroup memory sc[g][32] (-inf past len).
// - Softmax of the chunk: simdgroup w takes heads w, w + 4, ...: m = max, e = exp(s - m), l = sum e.
// - Values: each thread loads its V rows once and accumulates e * v for its 8 dims and all G heads
//   in registers; then the PPB position groups are summed through threadgroup memory, all heads after
//   one barrier where they fit (G <= 4), else head by head.
//   The threadgroup writes [m, l, acc[0..D-1]] per head to part[t][h][s].
// Queries in sub-batches (the host's budget for the partials, as CUDA): every kernel takes t0, the
// sub-batch's first query; q, part and out are bound at that sub-batch, so the threadgroup index (z,
// or y in the merges) is the query within it and len = pos + t0 + index + 1.
// Stage 2, attention_combine_f32: grid (nHeads, T), threadgroup D threads; thread d merges the
// ceil(len / 32) partials: M = max m_s, out[d] = sum acc_s[d] e^(m_s - M) / sum l_s e^(m_s - M).
// attention_combine_long_f32 (the host takes it once a step ends past ATT_LONG positions): the same
// merge with M by a threadgroup reduction, the weights computed once each into threadgroup memory
// (WCAP at a time, by thread s % QD), and QD threads, Q = min(8, 1024 / D) per dim, thread (d, q)
// summing acc_s[d] w_s over s = q, q + Q, .. in two chains, the Q sums meeting in threadgroup memory
// in a fixed order.
// q must be 16-byte aligned (the host checks). exp and rsqrt are precise:: (metal/README.md).
// Threadgroup memory: 1 KiB scores + 16.3 KiB reduction (the long merge: 11.1 KiB), inside Apple's 32 KiB.

import { COMMON, type KernelFile } from "./common.ts";

export const ATT_CHUNK = 32; // as CUDA (tuned there on an H200; not yet on a Mac)
/** A step that ends past this many positions merges with attention_combine_long_f32 (as CUDA). */
export const ATT_LONG = 1024;
/** attention_combine_long_f32 runs up to ATT_LONG_QS threads per dim, at most 1024 (as CUDA). */
export const ATT_LONG_QS = 8;
/** Largest GQA group (query heads per kv head) the kernel holds in registers. */
export const ATT_MAX_GROUP = 8;

/** The serial merge of one query, head and dim from its ns chunk partials at base (stride D + 2),
 *  attention_combine_f32's body (CUDA shares it with a fused CUDA-only kernel). */
export const ATT_MERGE = /* metal */ `
inline float att_merge(device const float* base, int ns, int D, int d) {
  float M = NEG_INF;
  for (int s = 0; s < ns; s++) M = fmax(M, base[(ulong)s * (D + 2)]);
  float L = 0.f, a = 0.f;
  for (int s = 0; s < ns; s++) {
    device const float* p = base + (ulong)s * (D + 2);
    const float e = precise::exp(p[0] - M);
    L += p[1] * e;
    a += p[2 + d] * e;
  }
  return a / L;
}
`;

export const attention_f32: KernelFile = {
  file: "attention_f32",
  kernels: ["attention_partial_f32", "attention_combine_f32", "attention_combine_long_f32"],
  source: COMMON + ATT_MERGE + /* metal */ `
#define CHUNK ${ATT_CHUNK}
#define MAXG ${ATT_MAX_GROUP}
#define NT 128

template <int D, int GM>
inline void attention_partial(
    device const float* q, device const u16* kc, device const u16* vc, device float* part,
    int len, int P, int nH, int nKv, int S, threadgroup float (*sc)[CHUNK], threadgroup float* sm, threadgroup float* sl,
    threadgroup float (*red)[256 + 4], uint3 tid3, uint3 bid) {
  constexpr int LPP = D / 8, PPW = 32 / LPP, PPB = 4 * PPW, IT = CHUNK / PPB;
  const int tid = int(tid3.x);
  const int s = int(bid.x), kvh = int(bid.y), t = int(bid.z);
  const int p0 = s * CHUNK;
  const int G = nH / nKv, lane = tid & 31, warp = tid >> 5;
  const int sub = lane % LPP, d0 = 8 * sub, grp = warp * PPW + lane / LPP;
  const ulong stride = (ulong)nKv * D;
  const float scale = precise::rsqrt((float)D);

  // Key rows of positions before this step's (p < P) were written by earlier steps, so they are
  // loaded before PDL_WAIT (a no-op on Metal, kept at the CUDA twin's place); this step's rows
  // (qk_norm_rope_append wrote them) and q after.
  uint4 kw[IT];
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int p = p0 + it * PPB + grp;
    kw[it] = p < P ? *reinterpret_cast<device const uint4*>(kc + p * stride + kvh * D + d0) : uint4(0u, 0u, 0u, 0u);
  }
  // (the CUDA twin prefetches the value rows of p < P into L2 here: a hint Metal has no form of)
  PDL_WAIT(); PDL_LAUNCH();
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int p = p0 + it * PPB + grp;
    if (p >= P && p < len) kw[it] = *reinterpret_cast<device const uint4*>(kc + p * stride + kvh * D + d0);
  }
  float qr[GM][8];
  #pragma unroll
  for (int g = 0; g < GM; g++) {
    if (g < G) {
      device const float4* qp = reinterpret_cast<device const float4*>(q + ((ulong)t * nH + kvh * G + g) * D + d0);
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
        for (ushort o = LPP / 2; o > 0; o >>= 1) dot += simd_shuffle_xor(dot, o);
        if (sub == 0) sc[g][i] = p < len ? dot * scale : NEG_INF;
      }
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  // softmax over the chunk, one simdgroup per head
  for (int g = warp; g < G; g += NT / 32) {
    float v[CHUNK / 32], m = NEG_INF, l = 0.f;
    #pragma unroll
    for (int k = 0; k < CHUNK / 32; k++) { v[k] = sc[g][lane + 32 * k]; m = fmax(m, v[k]); }
    m = warp_max(m);
    #pragma unroll
    for (int k = 0; k < CHUNK / 32; k++) {
      const float e = v[k] == NEG_INF ? 0.f : precise::exp(v[k] - m);
      sc[g][lane + 32 * k] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) { sm[g] = m; sl[g] = l; }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  // weighted values: each V row loaded once for all G heads (here, not with the keys: holding them
  // through the softmax took 128 -> 154 registers and prefill 4,150 -> 4,060 tok/s)
  uint4 vw[IT];
  #pragma unroll
  for (int it = 0; it < IT; it++) {
    const int p = p0 + it * PPB + grp;
    vw[it] = p < len ? *reinterpret_cast<device const uint4*>(vc + p * stride + kvh * D + d0) : uint4(0u, 0u, 0u, 0u);
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
  // sum the PPB position groups per head through threadgroup memory; write [m, l, acc]
  device float* dst = part + ((ulong)t * nH + kvh * G) * S * (D + 2) + (ulong)s * (D + 2);
  // When every head's sums fit red at once (row RS per position group), one barrier for all heads
  // (as the CUDA twin); otherwise two per head.
  constexpr int RS = GM * D + 4;
  if (PPB * RS <= NT / 32 * 32 / 8 * (256 + 4)) {
    threadgroup float* r0 = &red[0][0];
    #pragma unroll
    for (int g = 0; g < GM; g++) {
      if (g < G) {
        #pragma unroll
        for (int j = 0; j < 8; j++) r0[grp * RS + g * D + d0 + j] = acc[g][j]; // scalar: red's alignment is not declared
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int i = tid; i < G * D; i += NT) {
      float a = 0.f;
      #pragma unroll
      for (int r = 0; r < PPB; r++) a += r0[r * RS + i];
      dst[(ulong)(i / D) * S * (D + 2) + 2 + i % D] = a;
    }
    if (tid < G) { device float* out = dst + (ulong)tid * S * (D + 2); out[0] = sm[tid]; out[1] = sl[tid]; }
    return;
  }
  #pragma unroll
  for (int g = 0; g < GM; g++) {
    if (g < G) {
      #pragma unroll
      for (int j = 0; j < 8; j++) red[grp][d0 + j] = acc[g][j];
      threadgroup_barrier(mem_flags::mem_threadgroup);
      device float* out = dst + (ulong)g * S * (D + 2);
      for (int d = tid; d < D; d += NT) {
        float a = 0.f;
        #pragma unroll
        for (int r = 0; r < PPB; r++) a += red[r][d];
        out[2 + d] = a;
      }
      if (tid == 0) { out[0] = sm[g]; out[1] = sl[g]; }
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
  }
}

kernel void attention_partial_f32(
    device const float* q [[buffer(0)]], device const u16* kc [[buffer(1)]], device const u16* vc [[buffer(2)]],
    device float* part [[buffer(3)]], device const int* step [[buffer(4)]],
    constant int& nH [[buffer(5)]], constant int& nKv [[buffer(6)]], constant int& D [[buffer(7)]],
    constant int& S [[buffer(8)]], constant int& t0 [[buffer(9)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  // (PDL_WAIT comes inside, after the loads that need none, as in the CUDA twin)
  // position builtins are all uint3 here: MSL wants one vector width across them
  threadgroup float sc[MAXG][CHUNK];
  threadgroup float sm[MAXG], sl[MAXG];
  threadgroup float red[NT / 32 * 32 / 8][256 + 4]; // [position group][dim], padded
  const int P = step[STEP_POS], len = P + t0 + int(bid.z) + 1;
  if (int(bid.x) * CHUNK >= len) return; // the whole threadgroup: no barrier is skipped
  // GM: the smallest of 1, 2, 4, 8 holding the group G = nH / nKv (registers are sized by GM)
  const int G = nH / nKv;
#define ATT_CASE(DD, GG) if (D == DD && G <= GG) return attention_partial<DD, GG>(q, kc, vc, part, len, P, nH, nKv, S, sc, sm, sl, red, tid3, bid);
#define ATT_D(DD) ATT_CASE(DD, 1) ATT_CASE(DD, 2) ATT_CASE(DD, 4) ATT_CASE(DD, 8)
  ATT_D(64) ATT_D(128) ATT_D(256)
#undef ATT_D
#undef ATT_CASE
}

kernel void attention_combine_f32(device const float* part [[buffer(0)]], device float* out [[buffer(1)]],
                                  device const int* step [[buffer(2)]], constant int& nH [[buffer(3)]],
                                  constant int& D [[buffer(4)]], constant int& S [[buffer(5)]], constant int& t0 [[buffer(6)]],
                                  uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  // position builtins are all uint3 here: MSL wants one vector width across them
  const int h = int(bid.x), t = int(bid.y), d = int(tid3.x);
  const int len = step[STEP_POS] + t0 + t + 1;
  out[((ulong)t * nH + h) * D + d] = att_merge(part + ((ulong)t * nH + h) * S * (D + 2), (len + CHUNK - 1) / CHUNK, D, d);
}

#define WCAP 1024
#define QS ${ATT_LONG_QS}
// Q threads per dim, a template parameter so the summing loop's strides are constants (as CUDA).
template <int Q>
inline void combine_long(device const float* part, device float* out, int len, int h, int t, int nH, int D, int S,
                         threadgroup float* w, threadgroup float* sh, threadgroup float (*red)[256], uint tidu, uint ntu) {
  const int tid = int(tidu), nt = int(ntu), d = tid % D, q = tid / D;
  const int ns = (len + CHUNK - 1) / CHUNK;
  const ulong st = ulong(D + 2);
  device const float* base = part + ((ulong)t * nH + h) * S * st;
  float m = NEG_INF;
  for (int s = tid; s < ns; s += nt) m = fmax(m, base[s * st]);
  const float M = block_max(m, sh, tidu, ntu);
  float l = 0.f, a0 = 0.f, a1 = 0.f;
  for (int s0 = 0; s0 < ns; s0 += WCAP) {
    const int n = min(WCAP, ns - s0);
    threadgroup_barrier(mem_flags::mem_threadgroup); // every thread has read the previous chunk's weights
    for (int j = tid; j < n; j += nt) {
      device const float* p = base + (s0 + j) * st;
      const float e = precise::exp(p[0] - M);
      w[j] = e;
      l += p[1] * e;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    // thread (d, q) takes partials q, q + Q, ... of the chunk, in two chains
    device const float* p = base + (s0 + q) * st + 2 + d;
    int j = q;
    for (; j + Q < n; j += 2 * Q, p += 2 * Q * st) { a0 += p[0] * w[j]; a1 += p[Q * st] * w[j + Q]; }
    if (j < n) a0 += p[0] * w[j];
  }
  const float L = block_sum(l, sh, tidu, ntu);
  const float a = a0 + a1;
  if (q > 0) red[q - 1][d] = a;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (q == 0) {
    float v = a;
    #pragma unroll
    for (int r = 0; r < Q - 1; r++) v += red[r][d];
    out[((ulong)t * nH + h) * D + d] = v / L;
  }
}

kernel void attention_combine_long_f32(device const float* part [[buffer(0)]], device float* out [[buffer(1)]],
                                       device const int* step [[buffer(2)]], constant int& nH [[buffer(3)]],
                                       constant int& D [[buffer(4)]], constant int& S [[buffer(5)]], constant int& t0 [[buffer(6)]],
                                       uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]],
                                       uint3 bdim3 [[threads_per_threadgroup]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup float w[WCAP];
  threadgroup float sh[32];
  threadgroup float red[QS - 1][256];
  const int len = step[STEP_POS] + t0 + int(bid.y) + 1, Q = int(bdim3.x) / D; // the host launches Q = 8, 4 or 2
  if (Q == 8) combine_long<8>(part, out, len, int(bid.x), int(bid.y), nH, D, S, w, sh, red, tid3.x, bdim3.x);
  else if (Q == 4) combine_long<4>(part, out, len, int(bid.x), int(bid.y), nH, D, S, w, sh, red, tid3.x, bdim3.x);
  else combine_long<2>(part, out, len, int(bid.x), int(bid.y), nH, D, S, w, sh, red, tid3.x, bdim3.x);
}
`,
};
