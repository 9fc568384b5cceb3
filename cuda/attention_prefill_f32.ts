// attention_prefill_f32: causal GQA attention of a prefill pass (T > 1 queries at positions
// pos .. pos + T - 1) over the f16 KV cache, tiled: each block walks the keys once for a tile of
// query rows, with an online softmax, so no partials go through global memory. f32 math and sums;
// the same result as attention_partial_f32 + a merge up to f32 rounding (another order of sums).
// (The decode step keeps the split kernels: one query has too few rows to fill a tile.)
//
// Rows. A tile holds R rows = (query, head) pairs of one kv head: row r is query qt * BQ + r / G,
// head kvh * G + r % G, where G = nHeads / nKv and BQ = R / G queries (G must divide R). The G heads
// of a query are contiguous in q, so a tile's rows are BQ runs of G * D floats.
// Grid (nKv, ceil(T / BQ)), NT threads; block (x, y) takes kv head x and query tile gridDim.y - 1 - y,
// so the blocks go out longest first (causal tiles grow with their position), all kv heads of a
// tile together: the first wave, one block per SM, holds the long tiles, and the second block of an
// SM is one of the short ones. Key tiles of BK positions: 0 .. the tile's last query position.
// Threads: ty = tid / 16 owns rows ty + RS * i (i < R / RS, RS = NT / 16), tx = tid % 16 owns keys
// tx + 16 * j (j < BK / 16) of the score tile and dims 4 * tx + 64 * c (c < D / 64) of the output, so
// the 16 lanes that share a row are a half-warp: row max and sum are 4 shuffles.
// Per key tile:
//   K (f16, loaded into registers the tile before) -> f32 in shared memory;  barrier
//   V tile -> registers (in flight during the scores);  S = Q K^T * D^-0.5, masked past each row's
//   position;  m' = max(m, rowmax S), p = e^(S - m'), l = l e^(m - m') + rowsum p, o *= e^(m - m');
//   p -> shared memory;  barrier;  V -> shared memory (where K was);  barrier;  the next K tile ->
//   registers;  o += p V;  barrier.
// out = o / l. Rows past T are computed on zero queries and not written.
// Shared memory (dynamic): Q [R][D + 4] f32, K or V [BK][D + 4] f32, p [R][BK + 4] f32. The +4 keeps
// 16-byte rows and puts the 8 rows a quarter-warp reads at different bank groups.

import { COMMON, type KernelFile } from "./common.ts";

/** Rows (query, head pairs) per tile, key positions per tile, threads per block. */
export const ATT_PREFILL_ROWS = 64;
export const ATT_PREFILL_KEYS = 64;
export const ATT_PREFILL_THREADS = 256;
/** Shared memory bytes of one block for head_dim D. */
export const attPrefillSmem = (D: number): number => 4 * ((ATT_PREFILL_ROWS + ATT_PREFILL_KEYS) * (D + 4) + ATT_PREFILL_ROWS * (ATT_PREFILL_KEYS + 4));
/** head_dims the kernel has a case for (dims per thread: D / 16 in float4 runs 64 apart). */
export const ATT_PREFILL_DIMS: readonly number[] = [64, 128];

export const attention_prefill_f32: KernelFile = {
  file: "attention_prefill_f32",
  kernels: ["attention_prefill_f32"],
  source: COMMON + /* cuda */ `
#define R ${ATT_PREFILL_ROWS}
#define BK ${ATT_PREFILL_KEYS}
#define NT ${ATT_PREFILL_THREADS}
#define RS (NT / 16)
#define RI (R / RS)
#define KJ (BK / 16)

// K or V rows of key tile kt -> registers: CH 16-byte chunks per thread, zero past position last
template <int D, int CH>
__device__ __forceinline__ void kv_load(uint4 (&kv)[CH], const u16* __restrict__ src, int kt, int last, size_t stride, int kvh, int tid) {
  #pragma unroll
  for (int u = 0; u < CH; u++) {
    const int c = tid + NT * u, p = kt * BK + c / (D / 8);
    kv[u] = p <= last ? *reinterpret_cast<const uint4*>(src + p * stride + kvh * D + 8 * (c % (D / 8))) : make_uint4(0, 0, 0, 0);
  }
}
// ... -> shared memory rows [BK][D + 4] as f32
template <int D, int CH>
__device__ __forceinline__ void kv_store(const uint4 (&kv)[CH], float* KV, int tid) {
  #pragma unroll
  for (int u = 0; u < CH; u++) {
    const int c = tid + NT * u;
    const u32 w[4] = {kv[u].x, kv[u].y, kv[u].z, kv[u].w};
    float f[8];
    #pragma unroll
    for (int j = 0; j < 4; j++) { f[2 * j] = h2f((u16)(w[j] & 0xffffu)); f[2 * j + 1] = h2f((u16)(w[j] >> 16)); }
    float4* dst = reinterpret_cast<float4*>(KV + (c / (D / 8)) * (D + 4) + 8 * (c % (D / 8)));
    dst[0] = make_float4(f[0], f[1], f[2], f[3]);
    dst[1] = make_float4(f[4], f[5], f[6], f[7]);
  }
}

template <int D>
__device__ __forceinline__ void attention_prefill(const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc,
                                                  float* __restrict__ out, int P, int nH, int nKv, int T, float* smem) {
  constexpr int DS = D + 4, PS = BK + 4, DC = D / 64, CH = BK * D / 8 / NT; // CH: 16-byte K/V chunks per thread
  float* Qs = smem;
  float* KV = Qs + R * DS;
  float* Ps = KV + BK * DS;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const int G = nH / nKv, BQ = R / G, kvh = blockIdx.x;
  const int qt = gridDim.y - 1 - blockIdx.y, tq0 = qt * BQ; // this tile's first query
  const int last = P + min(T, tq0 + BQ) - 1;                 // its last query's position
  const int nk = last / BK + 1;
  const size_t stride = (size_t)nKv * D;
  const float scale = rsqrtf((float)D);

  // Q tile: row r = query tq0 + r / G, head kvh * G + r % G
  for (int i = tid; i < R * D / 4; i += NT) {
    const int r = i / (D / 4), c4 = i % (D / 4), t = tq0 + r / G;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (t < T) v = *reinterpret_cast<const float4*>(q + ((size_t)t * nH + kvh * G + r % G) * D + 4 * c4);
    *reinterpret_cast<float4*>(Qs + r * DS + 4 * c4) = v;
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
    __syncthreads();
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
      for (int i = 0; i < RI; i++) a[i] = *reinterpret_cast<const float4*>(Qs + (ty + RS * i) * DS + d);
      #pragma unroll
      for (int j = 0; j < KJ; j++) b[j] = *reinterpret_cast<const float4*>(KV + (tx + 16 * j) * DS + d);
      #pragma unroll
      for (int i = 0; i < RI; i++) {
        #pragma unroll
        for (int j = 0; j < KJ; j++) s[i][j] += a[i].x * b[j].x + a[i].y * b[j].y + a[i].z * b[j].z + a[i].w * b[j].w;
      }
    }
    // online softmax, row by row (the 16 lanes of a row are one half-warp)
    #pragma unroll
    for (int i = 0; i < RI; i++) {
      float mx = NEG_INF;
      #pragma unroll
      for (int j = 0; j < KJ; j++) {
        const int p = kt * BK + tx + 16 * j;
        s[i][j] = p <= qpos[i] ? s[i][j] * scale : NEG_INF;
        mx = fmaxf(mx, s[i][j]);
      }
      #pragma unroll
      for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, off));
      const float mn = fmaxf(m[i], mx);
      const float alpha = m[i] == NEG_INF ? 0.f : expf(m[i] - mn); // mn is finite once a row saw key 0
      float sum = 0.f;
      #pragma unroll
      for (int j = 0; j < KJ; j++) {
        const float e = s[i][j] == NEG_INF ? 0.f : expf(s[i][j] - mn);
        Ps[(ty + RS * i) * PS + tx + 16 * j] = e;
        sum += e;
      }
      #pragma unroll
      for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(FULL_MASK, sum, off);
      m[i] = mn;
      l[i] = l[i] * alpha + sum;
      #pragma unroll
      for (int c = 0; c < DC; c++) { o[i][c][0] *= alpha; o[i][c][1] *= alpha; o[i][c][2] *= alpha; o[i][c][3] *= alpha; }
    }
    __syncthreads(); // K read by every thread, p written
    kv_store<D, CH>(kv, KV, tid); // V
    __syncthreads();
    if (kt + 1 < nk) kv_load<D, CH>(kv, kc, kt + 1, last, stride, kvh, tid);
    #pragma unroll 2
    for (int k = 0; k < BK; k += 4) {
      float4 pr[RI];
      #pragma unroll
      for (int i = 0; i < RI; i++) pr[i] = *reinterpret_cast<const float4*>(Ps + (ty + RS * i) * PS + k);
      #pragma unroll
      for (int kk = 0; kk < 4; kk++) {
        #pragma unroll
        for (int c = 0; c < DC; c++) {
          const float4 v = *reinterpret_cast<const float4*>(KV + (k + kk) * DS + 4 * tx + 64 * c);
          #pragma unroll
          for (int i = 0; i < RI; i++) {
            const float e = kk == 0 ? pr[i].x : kk == 1 ? pr[i].y : kk == 2 ? pr[i].z : pr[i].w;
            o[i][c][0] += e * v.x; o[i][c][1] += e * v.y; o[i][c][2] += e * v.z; o[i][c][3] += e * v.w;
          }
        }
      }
    }
    __syncthreads(); // V and p read by every thread
  }
  #pragma unroll
  for (int i = 0; i < RI; i++) {
    const int r = ty + RS * i, t = tq0 + r / G;
    if (t >= T) continue;
    const float inv = 1.f / l[i];
    float* dst = out + ((size_t)t * nH + kvh * G + r % G) * D + 4 * tx;
    #pragma unroll
    for (int c = 0; c < DC; c++) *reinterpret_cast<float4*>(dst + 64 * c) = make_float4(o[i][c][0] * inv, o[i][c][1] * inv, o[i][c][2] * inv, o[i][c][3] * inv);
  }
}

// Two blocks per SM: ~83 KiB of shared memory each at head_dim 128, <= 128 registers.
extern "C" __global__ void __launch_bounds__(NT, 2) attention_prefill_f32(
    const float* __restrict__ q, const u16* __restrict__ kc, const u16* __restrict__ vc, float* __restrict__ out,
    const int* __restrict__ step, int nH, int nKv, int D, int T) {
  extern __shared__ __align__(16) float smem[];
  PDL_WAIT(); PDL_LAUNCH();
  const int P = step[STEP_POS];
  if (D == 64) attention_prefill<64>(q, kc, vc, out, P, nH, nKv, T, smem);
  else attention_prefill<128>(q, kc, vc, out, P, nH, nKv, T, smem);
}
`,
};
