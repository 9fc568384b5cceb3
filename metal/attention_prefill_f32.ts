// attention_prefill_f32: causal GQA attention of a prefill pass (T > 1 queries at positions
// pos .. pos + T - 1) over the f16 KV cache, tiled, with an online softmax. MSL twin of
// cuda/attention_prefill_f32.ts: the same algorithm, row / key / dim mapping and order of sums,
// on smaller tiles, because Apple GPUs give a threadgroup 32 KiB:
// - R = 32 rows and BK = 32 keys per tile, 128 threads (CUDA: 64, 64, 256), so a thread still owns
//   rows ty + RS i (RS = NT / 16 = 8, i < 4) and keys tx + 16 j (j < 2);
// - K and V tiles stay f16 in threadgroup memory (rows of D + 8 halves) and become f32 as they are
//   read (CUDA converts them once, into f32 rows). The cache is f16, so the values are the same.
// Rows: row r of a tile is query qt * BQ + r / G, head kvh * G + r % G (G = nHeads / nKv, BQ = R / G;
// G must divide R). Grid (nKv, ceil(T / BQ)); threadgroup (x, y) takes kv head x and query tile
// gdim.y - 1 - y (longest first, all kv heads of a tile together).
// Per key tile: K -> threadgroup; barrier; V -> registers; S = Q K^T * D^-0.5 masked past each
// row's position; m' = max(m, rowmax), p = e^(S - m'), l = l e^(m - m') + rowsum p, o *= e^(m - m');
// p -> threadgroup; barrier; V -> threadgroup; barrier; next K -> registers; o += p V; barrier.
// out = o / l; rows past T are not written. exp and rsqrt are precise:: (metal/README.md).
// Threadgroup memory at D = 128: Q 16.5 KiB + K/V 8.5 KiB + p 4.5 KiB = 29.5 KiB.

import { COMMON, type KernelFile } from "./common.ts";

/** Rows (query, head pairs) per tile, key positions per tile, threads per threadgroup. */
export const ATT_PREFILL_ROWS = 32;
export const ATT_PREFILL_KEYS = 32;
export const ATT_PREFILL_THREADS = 128;
/** Threadgroup memory bytes for head_dim D (the kernel declares the D = 128 size). */
export const attPrefillSmem = (D: number): number => 4 * ATT_PREFILL_ROWS * (D + 4) + 2 * ATT_PREFILL_KEYS * (D + 8) + 4 * ATT_PREFILL_ROWS * (ATT_PREFILL_KEYS + 4);
/** head_dims the kernel has a case for (dims per thread: D / 16 in float4 runs 64 apart). */
export const ATT_PREFILL_DIMS: readonly number[] = [64, 128];

export const attention_prefill_f32: KernelFile = {
  file: "attention_prefill_f32",
  kernels: ["attention_prefill_f32"],
  source: COMMON + /* metal */ `
#define R ${ATT_PREFILL_ROWS}
#define BK ${ATT_PREFILL_KEYS}
#define NT ${ATT_PREFILL_THREADS}
#define RS (NT / 16)
#define RI (R / RS)
#define KJ (BK / 16)
#define DMAX 128

// K or V rows of key tile kt -> registers: CH 16-byte chunks per thread, zero past position last
template <int D, int CH>
inline void kv_load(thread uint4* kv, device const u16* src, int kt, int last, ulong stride, int kvh, int tid) {
  #pragma unroll
  for (int u = 0; u < CH; u++) {
    const int c = tid + NT * u, p = kt * BK + c / (D / 8);
    kv[u] = p <= last ? *reinterpret_cast<device const uint4*>(src + p * stride + kvh * D + 8 * (c % (D / 8))) : uint4(0u, 0u, 0u, 0u);
  }
}
// ... -> threadgroup rows [BK][D + 8], still f16
template <int D, int CH>
inline void kv_store(thread const uint4* kv, threadgroup u16* KV, int tid) {
  #pragma unroll
  for (int u = 0; u < CH; u++) {
    const int c = tid + NT * u;
    *reinterpret_cast<threadgroup uint4*>(KV + (c / (D / 8)) * (D + 8) + 8 * (c % (D / 8))) = kv[u];
  }
}
// 4 halves of a threadgroup row (8-byte aligned) as f32
inline float4 kv4(threadgroup const u16* p) {
  const uint2 w = *reinterpret_cast<threadgroup const uint2*>(p);
  return float4(h2f((u16)(w.x & 0xffffu)), h2f((u16)(w.x >> 16)), h2f((u16)(w.y & 0xffffu)), h2f((u16)(w.y >> 16)));
}

template <int D>
inline void attention_prefill(device const float* q, device const u16* kc, device const u16* vc, device float* out,
                              int P, int nH, int nKv, int T, threadgroup float* Qs, threadgroup u16* KV, threadgroup float* Ps,
                              uint3 tid3, uint3 bid, uint3 gdim) {
  constexpr int DS = D + 4, KS = D + 8, PS = BK + 4, DC = D / 64, CH = BK * D / 8 / NT; // CH: 16-byte K/V chunks per thread
  const int tid = int(tid3.x), ty = tid >> 4, tx = tid & 15;
  const int G = nH / nKv, BQ = R / G, kvh = int(bid.x);
  const int qt = int(gdim.y) - 1 - int(bid.y), tq0 = qt * BQ; // this tile's first query
  const int last = P + min(T, tq0 + BQ) - 1;                   // its last query's position
  const int nk = last / BK + 1;
  const ulong stride = (ulong)nKv * D;
  const float scale = precise::rsqrt((float)D);

  // Q tile: row r = query tq0 + r / G, head kvh * G + r % G
  for (int i = tid; i < R * D / 4; i += NT) {
    const int r = i / (D / 4), c4 = i % (D / 4), t = tq0 + r / G;
    float4 v = float4(0.f, 0.f, 0.f, 0.f);
    if (t < T) v = *reinterpret_cast<device const float4*>(q + ((ulong)t * nH + kvh * G + r % G) * D + 4 * c4);
    *reinterpret_cast<threadgroup float4*>(Qs + r * DS + 4 * c4) = v;
  }
  int qpos[RI];
  #pragma unroll
  for (int i = 0; i < RI; i++) qpos[i] = P + tq0 + (ty + RS * i) / G;

  uint4 kv[CH]; // K or V chunks in flight
  float o[RI][DC][4], m[RI], l[RI];
  #pragma unroll
  for (int i = 0; i < RI; i++) {
    m[i] = NEG_INF; l[i] = 0.f;
    #pragma unroll
    for (int c = 0; c < DC; c++) o[i][c][0] = o[i][c][1] = o[i][c][2] = o[i][c][3] = 0.f;
  }
  kv_load<D, CH>(kv, kc, 0, last, stride, kvh, tid);
  for (int kt = 0; kt < nk; kt++) {
    kv_store<D, CH>(kv, KV, tid); // K
    threadgroup_barrier(mem_flags::mem_threadgroup);
    kv_load<D, CH>(kv, vc, kt, last, stride, kvh, tid);
    // scores of rows ty + RS i, keys tx + 16 j
    float s[RI][KJ];
    #pragma unroll
    for (int i = 0; i < RI; i++) {
      #pragma unroll
      for (int j = 0; j < KJ; j++) s[i][j] = 0.f;
    }
    #pragma unroll 4
    for (int d = 0; d < D; d += 4) {
      float4 a[RI], b[KJ];
      #pragma unroll
      for (int i = 0; i < RI; i++) a[i] = *reinterpret_cast<threadgroup const float4*>(Qs + (ty + RS * i) * DS + d);
      #pragma unroll
      for (int j = 0; j < KJ; j++) b[j] = kv4(KV + (tx + 16 * j) * KS + d);
      #pragma unroll
      for (int i = 0; i < RI; i++) {
        #pragma unroll
        for (int j = 0; j < KJ; j++) s[i][j] += a[i].x * b[j].x + a[i].y * b[j].y + a[i].z * b[j].z + a[i].w * b[j].w;
      }
    }
    // online softmax, row by row (the 16 lanes of a row are one half of a simdgroup)
    #pragma unroll
    for (int i = 0; i < RI; i++) {
      float mx = NEG_INF;
      #pragma unroll
      for (int j = 0; j < KJ; j++) {
        const int p = kt * BK + tx + 16 * j;
        s[i][j] = p <= qpos[i] ? s[i][j] * scale : NEG_INF;
        mx = fmax(mx, s[i][j]);
      }
      #pragma unroll
      for (ushort off = 8; off > 0; off >>= 1) mx = fmax(mx, simd_shuffle_xor(mx, off));
      const float mn = fmax(m[i], mx);
      const float alpha = m[i] == NEG_INF ? 0.f : precise::exp(m[i] - mn); // mn is finite once a row saw key 0
      float sum = 0.f;
      #pragma unroll
      for (int j = 0; j < KJ; j++) {
        const float e = s[i][j] == NEG_INF ? 0.f : precise::exp(s[i][j] - mn);
        Ps[(ty + RS * i) * PS + tx + 16 * j] = e;
        sum += e;
      }
      #pragma unroll
      for (ushort off = 8; off > 0; off >>= 1) sum += simd_shuffle_xor(sum, off);
      m[i] = mn;
      l[i] = l[i] * alpha + sum;
      #pragma unroll
      for (int c = 0; c < DC; c++) { o[i][c][0] *= alpha; o[i][c][1] *= alpha; o[i][c][2] *= alpha; o[i][c][3] *= alpha; }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup); // K read by every thread, p written
    kv_store<D, CH>(kv, KV, tid); // V
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (kt + 1 < nk) kv_load<D, CH>(kv, kc, kt + 1, last, stride, kvh, tid);
    #pragma unroll 2
    for (int k = 0; k < BK; k += 4) {
      float4 pr[RI];
      #pragma unroll
      for (int i = 0; i < RI; i++) pr[i] = *reinterpret_cast<threadgroup const float4*>(Ps + (ty + RS * i) * PS + k);
      #pragma unroll
      for (int kk = 0; kk < 4; kk++) {
        #pragma unroll
        for (int c = 0; c < DC; c++) {
          const float4 v = kv4(KV + (k + kk) * KS + 4 * tx + 64 * c);
          #pragma unroll
          for (int i = 0; i < RI; i++) {
            const float e = kk == 0 ? pr[i].x : kk == 1 ? pr[i].y : kk == 2 ? pr[i].z : pr[i].w;
            o[i][c][0] += e * v.x; o[i][c][1] += e * v.y; o[i][c][2] += e * v.z; o[i][c][3] += e * v.w;
          }
        }
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup); // V and p read by every thread
  }
  #pragma unroll
  for (int i = 0; i < RI; i++) {
    const int r = ty + RS * i, t = tq0 + r / G;
    if (t >= T) continue;
    const float inv = 1.f / l[i];
    device float* dst = out + ((ulong)t * nH + kvh * G + r % G) * D + 4 * tx;
    #pragma unroll
    for (int c = 0; c < DC; c++) *reinterpret_cast<device float4*>(dst + 64 * c) = float4(o[i][c][0] * inv, o[i][c][1] * inv, o[i][c][2] * inv, o[i][c][3] * inv);
  }
}

kernel void attention_prefill_f32(
    device const float* q [[buffer(0)]], device const u16* kc [[buffer(1)]], device const u16* vc [[buffer(2)]],
    device float* out [[buffer(3)]], device const int* step [[buffer(4)]],
    constant int& nH [[buffer(5)]], constant int& nKv [[buffer(6)]], constant int& D [[buffer(7)]], constant int& T [[buffer(8)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]], uint3 gdim [[threadgroups_per_grid]]) {
  // position builtins are all uint3 here: MSL wants one vector width across them; the arrays are
  // declared as 16-byte vectors for their alignment
  threadgroup float4 Qv[R * (DMAX + 4) / 4];
  threadgroup uint4 KVv[BK * (DMAX + 8) / 8];
  threadgroup float4 Pv[R * (BK + 4) / 4];
  PDL_WAIT(); PDL_LAUNCH();
  const int P = step[STEP_POS];
  threadgroup float* Qs = reinterpret_cast<threadgroup float*>(Qv);
  threadgroup u16* KV = reinterpret_cast<threadgroup u16*>(KVv);
  threadgroup float* Ps = reinterpret_cast<threadgroup float*>(Pv);
  if (D == 64) attention_prefill<64>(q, kc, vc, out, P, nH, nKv, T, Qs, KV, Ps, tid3, bid, gdim);
  else attention_prefill<128>(q, kc, vc, out, P, nH, nKv, T, Qs, KV, Ps, tid3, bid, gdim);
}
`,
};
