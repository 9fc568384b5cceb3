// qmm_q1_f32: the prefill matmul, out[M, N] = x[M, K] @ dequant(W[N, K])^T, for M > 1.
// MSL twin of cuda/qmm_q1_f32.ts: the same algorithm on simdgroup matrices (f16 inputs, f32 accumulators).
//
// Algorithm (as CUDA). Per weight row n and 128-column group g:
//   out[m][n] = sum_g ( s[n][g] * P_g[m][n] + b[n][g] * xsum[m][g] ),  P_g = x[m, g-cols] · bits[n, g-cols]
// Only the 0/1 bits (exact in f16) enter the matrix multiply; x is split into x_hi = f16(x) and
// x_lo = f16(x - x_hi), both multiplied into the same f32 accumulator P_g over the group, which then
// folds into the output accumulator: acc += s * P_g + b * xsum (f32 FMAs; xsum = f32 row sum of the
// x tile). Integer x has x_lo = 0 and all sums exact, so the exact tests match bit for bit.
// Limit: |x| must stay below 65504 (f16 range of x_hi).
//
// Thread -> data mapping (256 threads = 8 simdgroups of 32; tile BM = 32 rows m x BN = 256 rows n):
// - Loader, as CUDA: thread t = 32*sg + l loads x[m0 + sg + 8i][128g + 4l .. +3], i = 0..3, writes
//   the hi / lo halves to xh / xl [32][XST = 136] (half), simd_sum of the row (warp_sum) -> xsum;
//   weight row n0 + t of group g: its 4 words -> ws[t][0..3], scale / bias -> ss[t], bs[t].
//   The next group's loads go to registers before the current group's multiplies. Loads are scalar
//   (CUDA takes 16-byte vector loads when the pointers are aligned).
// - CUDA's m16n8k16 mma.sync becomes 8x8x8 simdgroup_multiply_accumulate: simdgroup sg owns n rows
//   wn = 32*sg .. +31 (4 n8 tiles j) and all 32 m rows (4 m8 tiles i; CUDA: 2 m16 tiles, i.e. CUDA
//   tile i = Metal tiles 2i, 2i+1), and walks the group in 16 k8 steps (CUDA: 8 k16 steps, each =
//   Metal k8 steps 2kk, 2kk+1). Per k8 step kk: A_hi[i], A_lo[i] = simdgroup_load of the 8x8 block
//   at row 8i, column 8kk of xh / xl (row stride XST); B[j] (bits, 8 k x 8 n, B[k][n] = bit k of row n)
//   is written element by element; then P[i][j] = A_hi[i]*B[j] + P[i][j] and A_lo[i]*B[j] + P[i][j].
// - Element ownership in an 8x8 simdgroup matrix (thread_elements(), 2 per thread, the layout
//   MLX's steel MMA uses): lane l holds row r = (q & 4) + (l/2) % 4 and columns c = 2*(q & 2) + 2*(l%2)
//   + {0,1}, with q = l/4. So B[j]'s two elements are bit 8kk + r of rows wn + 8j + c (one word each,
//   word (8kk + r)/32 of the group), and P[i][j]'s are m = 8i + r, n = wn + 8j + c, folded by that
//   thread into acc[i][j][0..1] (plain registers, not a matrix).
// - Tails: x rows >= M and W rows >= N load as 0 and are not written. K is a multiple of 128.

import { COMMON, type KernelFile } from "./common.ts";

export const qmm_q1_f32: KernelFile = {
  file: "qmm_q1_f32",
  kernels: ["qmm_q1_f32"],
  source: COMMON + /* metal */ `
#define BM 32
#define BN 256
#define XST 136
// registers of one group's loads (CUDA: the load lambda's captures)
struct QmmPrefetch { float4 x[4]; uint4 w; u16 s, b; };
inline void qmm_load(thread QmmPrefetch& p, device const u32* w, device const u16* sc, device const u16* bi,
                     device const float* x, int M, int N, int K, int m0, int n0, int t, int g) {
  const int l = t & 31, sg = t >> 5, W = K >> 5, G = K >> 7;
  #pragma unroll
  for (int i = 0; i < 4; i++) {
    const int m = m0 + sg + 8 * i;
    p.x[i] = float4(0.f, 0.f, 0.f, 0.f);
    if (m < M) {
      device const float* q = x + (ulong)m * K + g * 128 + 4 * l;
      p.x[i] = float4(q[0], q[1], q[2], q[3]);
    }
  }
  const int n = n0 + t;
  p.w = uint4(0u, 0u, 0u, 0u); p.s = 0; p.b = 0;
  if (n < N) {
    device const u32* q = w + (ulong)n * W + g * 4;
    p.w = uint4(q[0], q[1], q[2], q[3]);
    p.s = sc[(ulong)n * G + g]; p.b = bi[(ulong)n * G + g];
  }
}
kernel void qmm_q1_f32(
    device const u32* w [[buffer(0)]], device const u16* sc [[buffer(1)]], device const u16* bi [[buffer(2)]],
    device const float* x [[buffer(3)]], device float* out [[buffer(4)]],
    constant int& M [[buffer(5)]], constant int& N [[buffer(6)]], constant int& K [[buffer(7)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup half xh[BM * XST];
  threadgroup half xl[BM * XST];
  threadgroup u32 ws[BN * 4];
  threadgroup float ss[BN], bs[BN], xsum[BM];
  const int t = int(tid3.x), l = t & 31, sg = t >> 5;
  const int m0 = int(bid.y) * BM, n0 = int(bid.x) * BN;
  const int G = K >> 7;
  const int q4 = l >> 2, er = (q4 & 4) + ((l >> 1) & 3), ec = 2 * (q4 & 2) + 2 * (l & 1); // element row / column
  QmmPrefetch pf;
  float acc[4][4][2];
  #pragma unroll
  for (int i = 0; i < 4; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      #pragma unroll
      for (int e = 0; e < 2; e++) acc[i][j][e] = 0.f;

  qmm_load(pf, w, sc, bi, x, M, N, K, m0, n0, t, 0);
  for (int g = 0; g < G; g++) {
    threadgroup_barrier(mem_flags::mem_threadgroup); // the previous group's tiles fully read
    #pragma unroll
    for (int i = 0; i < 4; i++) {
      const float v[4] = {pf.x[i].x, pf.x[i].y, pf.x[i].z, pf.x[i].w};
      u16 hi[4], lo[4];
      #pragma unroll
      for (int c = 0; c < 4; c++) { hi[c] = f2h(v[c]); lo[c] = f2h(v[c] - h2f(hi[c])); }
      const int r = sg + 8 * i;
      #pragma unroll
      for (int c = 0; c < 4; c++) { xh[r * XST + 4 * l + c] = as_type<half>(hi[c]); xl[r * XST + 4 * l + c] = as_type<half>(lo[c]); }
      const float s = warp_sum((v[0] + v[1]) + (v[2] + v[3]));
      if (l == 0) xsum[r] = s;
    }
    ws[t * 4 + 0] = pf.w.x; ws[t * 4 + 1] = pf.w.y; ws[t * 4 + 2] = pf.w.z; ws[t * 4 + 3] = pf.w.w;
    ss[t] = h2f(pf.s); bs[t] = h2f(pf.b);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (g + 1 < G) qmm_load(pf, w, sc, bi, x, M, N, K, m0, n0, t, g + 1);

    simdgroup_float8x8 P[4][4];
    #pragma unroll
    for (int i = 0; i < 4; i++)
      #pragma unroll
      for (int j = 0; j < 4; j++) P[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.f);
    for (int kk = 0; kk < 16; kk++) {
      const int k = 8 * kk + er; // the bit this thread places in B: column k of the group
      simdgroup_half8x8 ah[4], al[4], B[4];
      #pragma unroll
      for (int i = 0; i < 4; i++) {
        simdgroup_load(ah[i], &xh[8 * i * XST + 8 * kk], XST);
        simdgroup_load(al[i], &xl[8 * i * XST + 8 * kk], XST);
      }
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        const int n = 32 * sg + 8 * j + ec;
        B[j].thread_elements()[0] = half(float((ws[n * 4 + (k >> 5)] >> (k & 31)) & 1u));
        B[j].thread_elements()[1] = half(float((ws[(n + 1) * 4 + (k >> 5)] >> (k & 31)) & 1u));
        #pragma unroll
        for (int i = 0; i < 4; i++) {
          simdgroup_multiply_accumulate(P[i][j], ah[i], B[j], P[i][j]);
          simdgroup_multiply_accumulate(P[i][j], al[i], B[j], P[i][j]);
        }
      }
    }
    // fold the group: acc += s * P + b * xsum
    #pragma unroll
    for (int i = 0; i < 4; i++)
      #pragma unroll
      for (int j = 0; j < 4; j++)
        #pragma unroll
        for (int e = 0; e < 2; e++) {
          const int m = 8 * i + er, n = 32 * sg + 8 * j + ec + e;
          acc[i][j][e] = fma(ss[n], P[i][j].thread_elements()[e], fma(bs[n], xsum[m], acc[i][j][e]));
        }
  }
  #pragma unroll
  for (int i = 0; i < 4; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      #pragma unroll
      for (int e = 0; e < 2; e++) {
        const int m = m0 + 8 * i + er, n = n0 + 32 * sg + 8 * j + ec + e;
        if (m < M && n < N) out[(ulong)m * N + n] = acc[i][j][e];
      }
}
`,
};

/** Output tile of one 256-thread threadgroup: BM rows of x (grid y) by BN rows of W (grid x). */
export const QMM_BM = 32;
export const QMM_BN = 256;
