// qmm_q1_f32: the prefill matmul, out[M, N] = x[M, K] @ dequant(W[N, K])^T, for M > 1.
// f32 activations, f32 accumulation; weights read packed and dequantized into shared memory.
//
// Thread -> data mapping
// - A block (256 threads) computes a 64 x 64 tile of out: rows m0..m0+63 of x, rows n0..n0+63 of W.
// - K is walked 32 columns (one weight word) at a time:
//   * x tile [64 m][32 k]: thread t loads 8 consecutive floats of row t/4 and stores them
//     transposed, xs[k][m], so the inner loop reads 4 consecutive m with one 16-byte load;
//   * W tile: thread t takes weight row n0 + t/4 and 8 of its 32 bits, writes
//     ws[k][n] = bit ? s + b : b (the scale/bias of that row's group k/128).
// - Thread (ty = t/16, tx = t%16) accumulates out[m0 + 4ty .. +3][n0 + 4tx .. +3] (4x4 registers).
// - Tails: x rows >= M and W rows >= N load as 0 and are not written. K is a multiple of 128.

import { COMMON, type KernelFile } from "./common.ts";

export const qmm_q1_f32: KernelFile = {
  file: "qmm_q1_f32",
  kernels: ["qmm_q1_f32"],
  source: COMMON + /* cuda */ `
#define BM 64
#define BN 64
#define BK 32
extern "C" __global__ void __launch_bounds__(256) qmm_q1_f32(
    const u32* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const float* __restrict__ x, float* __restrict__ out, int M, int N, int K) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ __align__(16) float xs[BK][BM + 4];
  __shared__ __align__(16) float ws[BK][BN + 4];
  const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int W = K >> 5, G = K >> 7;
  const int lm = t >> 2, lk = (t & 3) * 8; // loader: x row / w row = t/4, 8 columns from lk
  float acc[4][4];
  #pragma unroll
  for (int i = 0; i < 4; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < K; k0 += BK) {
    // x tile
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
    if (m0 + lm < M) {
      const float* xp = x + (size_t)(m0 + lm) * K + k0 + lk;
      a = make_float4(xp[0], xp[1], xp[2], xp[3]);
      b = make_float4(xp[4], xp[5], xp[6], xp[7]);
    }
    // w tile
    float wv[8];
    if (n0 + lm < N) {
      const size_t row = (size_t)(n0 + lm);
      const u32 word = w[row * W + (k0 >> 5)] >> lk;
      const float s = h2f(sc[row * G + (k0 >> 7)]), bb = h2f(bi[row * G + (k0 >> 7)]);
      #pragma unroll
      for (int j = 0; j < 8; j++) wv[j] = ((word >> j) & 1u) ? s + bb : bb;
    } else {
      #pragma unroll
      for (int j = 0; j < 8; j++) wv[j] = 0.f;
    }
    __syncthreads(); // previous tile fully read
    xs[lk + 0][lm] = a.x; xs[lk + 1][lm] = a.y; xs[lk + 2][lm] = a.z; xs[lk + 3][lm] = a.w;
    xs[lk + 4][lm] = b.x; xs[lk + 5][lm] = b.y; xs[lk + 6][lm] = b.z; xs[lk + 7][lm] = b.w;
    #pragma unroll
    for (int j = 0; j < 8; j++) ws[lk + j][lm] = wv[j];
    __syncthreads();
    #pragma unroll 8
    for (int k = 0; k < BK; k++) {
      const float4 xa = *reinterpret_cast<const float4*>(&xs[k][ty * 4]);
      const float4 wb = *reinterpret_cast<const float4*>(&ws[k][tx * 4]);
      const float xr[4] = {xa.x, xa.y, xa.z, xa.w}, wr[4] = {wb.x, wb.y, wb.z, wb.w};
      #pragma unroll
      for (int i = 0; i < 4; i++)
        #pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] += xr[i] * wr[j];
    }
  }
  #pragma unroll
  for (int i = 0; i < 4; i++) {
    const int m = m0 + ty * 4 + i;
    if (m >= M) continue;
    #pragma unroll
    for (int j = 0; j < 4; j++) {
      const int n = n0 + tx * 4 + j;
      if (n < N) out[(size_t)m * N + n] = acc[i][j];
    }
  }
}
`,
};
