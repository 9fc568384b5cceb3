// qmm_q1_f32: the prefill matmul, out[M, N] = x[M, K] @ dequant(W[N, K])^T, for M > 1.
// MSL twin of cuda/qmm_q1_f32.ts. f32 activations, f32 accumulation; weights read packed and
// dequantized into threadgroup memory.
//
// Thread -> data mapping
// - A threadgroup (256 threads) computes a 64 x 64 tile of out: rows m0..m0+63 of x, n0..n0+63 of W.
// - K is walked 32 columns (one weight word) at a time:
//   * x tile [64 m][32 k]: thread t loads 8 consecutive floats of row t/4 and stores them
//     transposed, xs[k][m], so the inner loop reads 4 consecutive m with one 16-byte load;
//   * W tile: thread t takes weight row n0 + t/4 and 8 of its 32 bits, writes
//     ws[k][n] = bit ? s + b : b (the scale/bias of that row's group k/128).
// - Thread (ty = t/16, tx = t%16) accumulates out[m0 + 4ty .. +3][n0 + 4tx .. +3] (4x4 registers).
// - Tails: x rows >= M and W rows >= N load as 0 and are not written. K is a multiple of 128.
// The tiles are declared as float4 rows (BM + 4 = 68 floats = 17 float4) so the 16-byte reads are
// aligned by type (CUDA: __align__(16)); scalar stores go through a float view of the same memory.

import { COMMON, type KernelFile } from "./common.ts";

export const qmm_q1_f32: KernelFile = {
  file: "qmm_q1_f32",
  kernels: ["qmm_q1_f32"],
  source: COMMON + /* metal */ `
#define BM 64
#define BN 64
#define BK 32
kernel void qmm_q1_f32(
    device const u32* w [[buffer(0)]], device const u16* sc [[buffer(1)]], device const u16* bi [[buffer(2)]],
    device const float* x [[buffer(3)]], device float* out [[buffer(4)]],
    constant int& M [[buffer(5)]], constant int& N [[buffer(6)]], constant int& K [[buffer(7)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  // position builtins are all uint3 here: MSL wants one vector width across them
  const uint tid = tid3.x;
  threadgroup float4 xs4[BK][(BM + 4) / 4];
  threadgroup float4 ws4[BK][(BN + 4) / 4];
  threadgroup float* xs = reinterpret_cast<threadgroup float*>(&xs4[0][0]); // [BK][BM + 4]
  threadgroup float* ws = reinterpret_cast<threadgroup float*>(&ws4[0][0]); // [BK][BN + 4]
  const int t = int(tid), tx = t & 15, ty = t >> 4;
  const int m0 = int(bid.y) * BM, n0 = int(bid.x) * BN;
  const int W = K >> 5, G = K >> 7;
  const int lm = t >> 2, lk = (t & 3) * 8; // loader: x row / w row = t/4, 8 columns from lk
  float acc[4][4];
  #pragma unroll
  for (int i = 0; i < 4; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < K; k0 += BK) {
    // x tile
    float4 a = float4(0.f, 0.f, 0.f, 0.f), b = a;
    if (m0 + lm < M) {
      device const float* xp = x + (ulong)(m0 + lm) * K + k0 + lk;
      a = float4(xp[0], xp[1], xp[2], xp[3]);
      b = float4(xp[4], xp[5], xp[6], xp[7]);
    }
    // w tile
    float wv[8];
    if (n0 + lm < N) {
      const ulong row = (ulong)(n0 + lm);
      const u32 word = w[row * W + (k0 >> 5)] >> lk;
      const float s = h2f(sc[row * G + (k0 >> 7)]), bb = h2f(bi[row * G + (k0 >> 7)]);
      #pragma unroll
      for (int j = 0; j < 8; j++) wv[j] = ((word >> j) & 1u) ? s + bb : bb;
    } else {
      #pragma unroll
      for (int j = 0; j < 8; j++) wv[j] = 0.f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup); // previous tile fully read
    const int XS = BM + 4, WS = BN + 4;
    xs[(lk + 0) * XS + lm] = a.x; xs[(lk + 1) * XS + lm] = a.y; xs[(lk + 2) * XS + lm] = a.z; xs[(lk + 3) * XS + lm] = a.w;
    xs[(lk + 4) * XS + lm] = b.x; xs[(lk + 5) * XS + lm] = b.y; xs[(lk + 6) * XS + lm] = b.z; xs[(lk + 7) * XS + lm] = b.w;
    #pragma unroll
    for (int j = 0; j < 8; j++) ws[(lk + j) * WS + lm] = wv[j];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    #pragma unroll 8
    for (int k = 0; k < BK; k++) {
      const float4 xa = xs4[k][ty];
      const float4 wb = ws4[k][tx];
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
      if (n < N) out[(ulong)m * N + n] = acc[i][j];
    }
  }
}
`,
};
