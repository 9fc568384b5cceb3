// qmm_q1_f32: the prefill matmul, out[M, N] = x[M, K] @ dequant(W[N, K])^T, for M > 1.
// Tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulators; sm_80+) at f32-level accuracy.
//
// Algorithm. Per weight row n and 128-column group g (s, b = that group's scale and bias):
//   out[m][n] = sum_g ( s[n][g] * P_g[m][n] + b[n][g] * xsum[m][g] ),  P_g[m][n] = sum_{k in g} x[m][k] * bit[n][k]
// The bits are exact in f16 (0 / 1), so only they enter the MMA, never s*bit+b. x is split into
// x_hi = f16(x) and x_lo = f16(x - x_hi) (~22 significant bits together) and both are multiplied
// into the same f32 accumulator: P_g += x_hi·bits + x_lo·bits. P_g lives in f32 registers for the
// group's 8 k16 steps, then folds into the output accumulator: acc += s * P_g + b * xsum (f32 FMAs).
// xsum[m][g] is the f32 sum of the block's x tile row. Integer x splits as x_hi = x, x_lo = 0 and
// every product and sum is then exact, so small-integer tests match the CPU bit for bit.
// Limit: |x| must stay below 65504 (f16 range of x_hi).
//
// Thread -> data mapping (256 threads = 8 warps, one block = out tile of BM = 32 rows m x BN = 256 rows n):
// - K is walked one group (128 columns) per iteration; the next group's global loads are issued
//   into registers before the current group's MMAs (register double buffering).
// - Loader: thread t = 32*wp + l (warp wp, lane l) loads x[m0 + wp + 8i][128g + 4l .. +3], i = 0..3
//   (one float4; a warp reads one row), writes its hi and lo halves to xh / xl [32][XST] (f16,
//   row stride XST = 136 so ldmatrix rows hit distinct banks), and warp_sum of the row gives
//   xsum[wp + 8i]. It also loads weight row n0 + t of group g: its 4 words (uint4) into ws[t][0..3],
//   its scale and bias (as f32) into ss[t], bs[t].
// - MMA: warp wp owns n rows wn = 32*wp .. +31 (4 n8 tiles j) and all 32 m rows (2 m16 tiles i):
//   A (x, row-major 16x16) comes from ldmatrix.x4, lane l addressing row 16i + (l & 15), column
//   16kk + 8*(l >> 4); B (bits, 16x8 "col": B[k][n] = bit k of row n) is built in registers: lane l
//   holds n = wn + 8j + l/4, k = 16kk + 2*(l%4) + {0,1} (reg b0) and +8 (reg b1), taken from word kk/2,
//   bit offset 16*(kk&1) + 2*(l%4), and expanded as ((v&1) | (v&2)<<15) * 0x3C00 (two f16 0/1 values).
// - Accumulator element e (0..3) of tile (i, j) is m = 16i + l/4 + 8*(e>>1), n = wn + 8j + 2*(l%4) + (e&1)
//   (the m16n8 C layout); each thread keeps P[2][4][4] and acc[2][4][4].
// - Tails: x rows >= M and W rows >= N load as 0 and are not written. K is a multiple of 128.

import { COMMON, type KernelFile } from "./common.ts";

export const qmm_q1_f32: KernelFile = {
  file: "qmm_q1_f32",
  kernels: ["qmm_q1_f32"],
  source: COMMON + /* cuda */ `
#define BM 32
#define BN 256
#define XST 136
// two f16 values 0/1 from bits 0 and 1 of v (bit 0 in the low half)
__device__ __forceinline__ u32 bits_h2(u32 v) { return ((v & 1u) | ((v & 2u) << 15)) * 0x3C00u; }
__device__ __forceinline__ u32 smem_addr(const void* p) {
  u32 a; asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p)); return a;
}
__device__ __forceinline__ void ldsm_x4(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
extern "C" __global__ void __launch_bounds__(256, 2) qmm_q1_f32(
    const u32* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const float* __restrict__ x, float* __restrict__ out, int M, int N, int K) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ __align__(16) u16 xh[BM * XST];
  __shared__ __align__(16) u16 xl[BM * XST];
  __shared__ __align__(16) u32 ws[BN * 4];
  __shared__ float ss[BN], bs[BN], xsum[BM];
  const int t = threadIdx.x, l = t & 31, wp = t >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int W = K >> 5, G = K >> 7;
  const bool xal = ((size_t)x & 15) == 0, wal = ((size_t)w & 15) == 0;
  // prefetch registers: 4 x float4 of x, one row's group of words, its scale and bias
  float4 px[4];
  uint4 pw;
  u16 ps, pb;
  auto load = [&](int g) {
    #pragma unroll
    for (int i = 0; i < 4; i++) {
      const int m = m0 + wp + 8 * i;
      px[i] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (m < M) {
        const float* p = x + (size_t)m * K + g * 128 + 4 * l;
        px[i] = xal ? *reinterpret_cast<const float4*>(p) : make_float4(p[0], p[1], p[2], p[3]);
      }
    }
    const int n = n0 + t;
    pw = make_uint4(0u, 0u, 0u, 0u); ps = 0; pb = 0;
    if (n < N) {
      const u32* p = w + (size_t)n * W + g * 4;
      pw = wal ? *reinterpret_cast<const uint4*>(p) : make_uint4(p[0], p[1], p[2], p[3]);
      ps = sc[(size_t)n * G + g]; pb = bi[(size_t)n * G + g];
    }
  };
  float acc[2][4][4];
  #pragma unroll
  for (int i = 0; i < 2; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      #pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

  load(0);
  for (int g = 0; g < G; g++) {
    __syncthreads(); // the previous group's tiles fully read
    #pragma unroll
    for (int i = 0; i < 4; i++) {
      const float v[4] = {px[i].x, px[i].y, px[i].z, px[i].w};
      u16 hi[4], lo[4];
      #pragma unroll
      for (int c = 0; c < 4; c++) { hi[c] = f2h(v[c]); lo[c] = f2h(v[c] - h2f(hi[c])); }
      const int r = wp + 8 * i;
      *reinterpret_cast<uint2*>(&xh[r * XST + 4 * l]) = make_uint2(hi[0] | ((u32)hi[1] << 16), hi[2] | ((u32)hi[3] << 16));
      *reinterpret_cast<uint2*>(&xl[r * XST + 4 * l]) = make_uint2(lo[0] | ((u32)lo[1] << 16), lo[2] | ((u32)lo[3] << 16));
      const float s = warp_sum((v[0] + v[1]) + (v[2] + v[3]));
      if (l == 0) xsum[r] = s;
    }
    *reinterpret_cast<uint4*>(&ws[t * 4]) = pw;
    ss[t] = h2f(ps); bs[t] = h2f(pb);
    __syncthreads();
    if (g + 1 < G) load(g + 1);

    float P[2][4][4];
    #pragma unroll
    for (int i = 0; i < 2; i++)
      #pragma unroll
      for (int j = 0; j < 4; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) P[i][j][e] = 0.f;
    #pragma unroll 1
    for (int kw = 0; kw < 4; kw++) {
      u32 wd[4];
      #pragma unroll
      for (int j = 0; j < 4; j++) wd[j] = ws[(32 * wp + 8 * j + (l >> 2)) * 4 + kw];
      #pragma unroll
      for (int h = 0; h < 2; h++) {
        const int k = 32 * kw + 16 * h + 8 * (l >> 4);
        u32 ah[2][4], al[2][4];
        #pragma unroll
        for (int i = 0; i < 2; i++) {
          ldsm_x4(ah[i], smem_addr(&xh[(16 * i + (l & 15)) * XST + k]));
          ldsm_x4(al[i], smem_addr(&xl[(16 * i + (l & 15)) * XST + k]));
        }
        #pragma unroll
        for (int j = 0; j < 4; j++) {
          const u32 u = wd[j] >> (16 * h + 2 * (l & 3));
          const u32 b0 = bits_h2(u & 3u), b1 = bits_h2((u >> 8) & 3u);
          #pragma unroll
          for (int i = 0; i < 2; i++) { mma16816(P[i][j], ah[i], b0, b1); mma16816(P[i][j], al[i], b0, b1); }
        }
      }
    }
    // fold the group: acc += s * P + b * xsum
    #pragma unroll
    for (int i = 0; i < 2; i++)
      #pragma unroll
      for (int j = 0; j < 4; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
          const int m = 16 * i + (l >> 2) + 8 * (e >> 1), n = 32 * wp + 8 * j + 2 * (l & 3) + (e & 1);
          acc[i][j][e] = fmaf(ss[n], P[i][j][e], fmaf(bs[n], xsum[m], acc[i][j][e]));
        }
  }
  #pragma unroll
  for (int i = 0; i < 2; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      #pragma unroll
      for (int e = 0; e < 4; e++) {
        const int m = m0 + 16 * i + (l >> 2) + 8 * (e >> 1), n = n0 + 32 * wp + 8 * j + 2 * (l & 3) + (e & 1);
        if (m < M && n < N) out[(size_t)m * N + n] = acc[i][j][e];
      }
}
`,
};

/** Output tile of one 256-thread block: BM rows of x (grid y) by BN rows of W (grid x). */
export const QMM_BM = 32;
export const QMM_BN = 256;
