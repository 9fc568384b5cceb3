// qmm_q1_f32: the prefill matmul, out[M, N] = x[M, K] @ dequant(W[N, K])^T, for M > 1.
// MSL twin of cuda/qmm_q1_f32.ts: the same algorithm on simdgroup matrices (f16 inputs, f32 accumulators).
//
// Algorithm (as CUDA). Per weight row n and 128-column group g:
//   out[m][n] = sum_g ( s[n][g] * P_g[m][n] + b[n][g] * xsum[m][g] ),  P_g = x[m, g-cols] · bits[n, g-cols]
// Only the 0/1 bits (exact in f16) enter the matrix multiply; x is split into x_hi = f16(x) and
// x_lo = f16(x - x_hi), both multiplied into the same f32 accumulator P_g over the group, which then
// folds into the output accumulator: acc += s * P_g + b * xsum (f32 FMAs; xsum = f32 sum of the
// group's 128 values of row m). Integer x has x_lo = 0 and all sums exact, so the exact tests match
// bit for bit. Limit: |x| must stay below 65504 (f16 range of x_hi).
// lo = 0 (the host's matmul variant "f16"): x_lo is neither written nor multiplied, i.e. x is taken
// as f16 (half the multiplies; ~1e-3 relative error instead of ~1e-6).
//
// Two kernels, as CUDA. qmm_x_split_f32 splits x once per matmul (one simdgroup per row and group:
// lane l takes columns 4l..4l+3, xsum = warp_sum((v0 + v1) + (v2 + v3))) into xh, xl [Mp][K] (half
// bits) and xs [G][Mp] (f32), Mp = M rounded up to BM, padding rows 0.
//
// qmm_q1_f32, thread -> data mapping (256 threads = 8 simdgroups of 32; tile BM = 32 rows m x BN = 256 rows n):
// - Loader: thread t = 32*sg + l loads xh / xl[m0 + sg + 8i][128g + 4l .. +3], i = 0..3 (8 bytes
//   each) and writes them to the tiles th / tl [32][XST = 136] (half); threads t < 32 load
//   xs[g][m0 + t] -> xsum[t]; weight row n0 + t of group g: its 4 words -> ws[t][0..3], scale /
//   bias -> ss[t], bs[t]. The next group's loads go to registers before the current group's
//   multiplies (CUDA streams its stages with cp.async, which Apple GPUs do not have). Word loads are
//   scalar.
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
// - Tails: x rows >= M are the split's zero rows; W rows >= N load as 0; neither is written. K is a
//   multiple of 128.

import { COMMON, type KernelFile } from "./common.ts";

export const qmm_q1_f32: KernelFile = {
  file: "qmm_q1_f32",
  kernels: ["qmm_x_split_f32", "qmm_q1_f32"],
  source: COMMON + /* metal */ `
#define BM 32
#define BN 256
#define XST 136
// x [M, K] -> xh, xl [Mp, K] (half bits), xs [G, Mp] (f32 group sums); rows M..Mp-1 as 0.
kernel void qmm_x_split_f32(
    device const float* x [[buffer(0)]], device u16* xh [[buffer(1)]], device u16* xl [[buffer(2)]], device float* xs [[buffer(3)]],
    constant int& M [[buffer(4)]], constant int& K [[buffer(5)]], constant int& Mp [[buffer(6)]], constant int& lo [[buffer(7)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  const int G = K >> 7, l = int(tid3.x) & 31, wg = int(bid.x) * 8 + (int(tid3.x) >> 5);
  if (wg >= Mp * G) return; // a whole simdgroup at once
  const int m = wg / G, g = wg - m * G;
  float v[4] = {0.f, 0.f, 0.f, 0.f};
  if (m < M) {
    device const float* p = x + (ulong)m * K + g * 128 + 4 * l;
    v[0] = p[0]; v[1] = p[1]; v[2] = p[2]; v[3] = p[3];
  }
  const ulong o = (ulong)m * K + g * 128 + 4 * l;
  #pragma unroll
  for (int c = 0; c < 4; c++) {
    const u16 hi = f2h(v[c]);
    xh[o + c] = hi;
    if (lo) xl[o + c] = f2h(v[c] - h2f(hi));
  }
  const float s = warp_sum((v[0] + v[1]) + (v[2] + v[3]));
  if (l == 0) xs[(ulong)g * Mp + m] = s;
}

// registers of one group's loads (CUDA: the stage a group's cp.async copies fill)
struct QmmPrefetch { uint2 h[4], lo[4]; float xs; uint4 w; u16 s, b; };
inline void qmm_load(thread QmmPrefetch& p, device const u32* w, device const u16* sc, device const u16* bi,
                     device const u16* xh, device const u16* xl, device const float* xs,
                     int N, int K, int Mp, int m0, int n0, int t, int g, int lo) {
  const int l = t & 31, sg = t >> 5, W = K >> 5, G = K >> 7;
  #pragma unroll
  for (int i = 0; i < 4; i++) {
    const ulong o = (ulong)(m0 + sg + 8 * i) * K + g * 128 + 4 * l; // < Mp rows: always there
    p.h[i] = *reinterpret_cast<device const uint2*>(xh + o);
    p.lo[i] = uint2(0u, 0u);
    if (lo) p.lo[i] = *reinterpret_cast<device const uint2*>(xl + o);
  }
  p.xs = t < BM ? xs[(ulong)g * Mp + m0 + t] : 0.f;
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
    device const u16* xh [[buffer(3)]], device const u16* xl [[buffer(4)]], device const float* xs [[buffer(5)]],
    device float* out [[buffer(6)]],
    constant int& M [[buffer(7)]], constant int& N [[buffer(8)]], constant int& K [[buffer(9)]], constant int& Mp [[buffer(10)]],
    constant int& lo [[buffer(11)]],
    uint3 tid3 [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup half th[BM * XST]; // the group's x_hi tile
  threadgroup half tl[BM * XST]; // and its x_lo tile
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

  qmm_load(pf, w, sc, bi, xh, xl, xs, N, K, Mp, m0, n0, t, 0, lo);
  for (int g = 0; g < G; g++) {
    threadgroup_barrier(mem_flags::mem_threadgroup); // the previous group's tiles fully read
    #pragma unroll
    for (int i = 0; i < 4; i++) {
      const int r = sg + 8 * i;
      #pragma unroll
      for (int c = 0; c < 4; c++) { // one half at a time: a threadgroup half array is only 2-byte aligned
        const int sh = 16 * (c & 1);
        th[r * XST + 4 * l + c] = as_type<half>((u16)((c < 2 ? pf.h[i].x : pf.h[i].y) >> sh));
        tl[r * XST + 4 * l + c] = as_type<half>((u16)((c < 2 ? pf.lo[i].x : pf.lo[i].y) >> sh));
      }
    }
    if (t < BM) xsum[t] = pf.xs;
    ws[t * 4 + 0] = pf.w.x; ws[t * 4 + 1] = pf.w.y; ws[t * 4 + 2] = pf.w.z; ws[t * 4 + 3] = pf.w.w;
    ss[t] = h2f(pf.s); bs[t] = h2f(pf.b);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (g + 1 < G) qmm_load(pf, w, sc, bi, xh, xl, xs, N, K, Mp, m0, n0, t, g + 1, lo);

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
        simdgroup_load(ah[i], &th[8 * i * XST + 8 * kk], XST);
        if (lo) simdgroup_load(al[i], &tl[8 * i * XST + 8 * kk], XST);
      }
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        const int n = 32 * sg + 8 * j + ec;
        B[j].thread_elements()[0] = half(float((ws[n * 4 + (k >> 5)] >> (k & 31)) & 1u));
        B[j].thread_elements()[1] = half(float((ws[(n + 1) * 4 + (k >> 5)] >> (k & 31)) & 1u));
        #pragma unroll
        for (int i = 0; i < 4; i++) {
          simdgroup_multiply_accumulate(P[i][j], ah[i], B[j], P[i][j]);
          if (lo) simdgroup_multiply_accumulate(P[i][j], al[i], B[j], P[i][j]);
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
