// qmm_q1_f32: the prefill matmul, out[M, N] = x[M, K] @ dequant(W[N, K])^T, for M > 1.
// Tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulators; sm_80+) at f32-level accuracy.
//
// Algorithm. Per weight row n and 128-column group g (s, b = that group's scale and bias):
//   out[m][n] = sum_g ( s[n][g] * P_g[m][n] + b[n][g] * xsum[m][g] ),  P_g[m][n] = sum_{k in g} x[m][k] * bit[n][k]
// The bits are exact in f16 (0 / 1), so only they enter the MMA, never s*bit+b. x is split into
// x_hi = f16(x) and x_lo = f16(x - x_hi) (~22 significant bits together) and both are multiplied
// into the same f32 accumulator: P_g += x_hi·bits + x_lo·bits. P_g lives in f32 registers for the
// group's 8 k16 steps, then folds into the output accumulator: acc += s * P_g + b * xsum (f32 FMAs).
// xsum[m][g] is the f32 sum of the group's 128 values of row m. Integer x splits as x_hi = x,
// x_lo = 0 and every product and sum is then exact, so small-integer tests match the CPU bit for bit.
// Limit: |x| must stay below 65504 (f16 range of x_hi).
// lo = 0 (the host's matmul variant "f16"): x_lo is neither written nor multiplied, i.e. x is taken
// as f16 (half the MMAs; ~1e-3 relative error instead of ~1e-6).
//
// Two kernels. qmm_x_split_f32 splits x once per matmul (one warp per row and group: lane l takes
// columns 4l..4l+3 of the group, xsum = warp_sum((v0 + v1) + (v2 + v3))) into xh, xl [Mp][K] (f16)
// and xs [G][Mp] (f32, group-major so a block's 32 rows are 128 contiguous bytes), Mp = M rounded
// up to BM, padding rows 0. (Splitting inside every block of the matmul, as before 2026-11-22,
// redid it for each of the N / 256 column blocks.)
//
// qmm_q1_f32: one block = out tile of BM = 32 rows m x BN = 256 rows n, 256 threads = 8 warps.
// - K is walked one group (128 columns) per iteration through QS = 3 shared-memory stages filled
//   by cp.async (16-byte chunks): a stage holds the group's xh and xl tiles [32][XST] (f16, row
//   stride XST = 136 so ldmatrix rows hit distinct banks), its 256 rows of bit words [256][4] and
//   xsum [32]. Iteration g waits for its own stage, one barrier, then queues group g + 2 into the
//   stage iteration g - 1 read. Scales and biases are 2-byte values G apart, too small for cp.async:
//   thread t keeps those of row n0 + t one group ahead in registers and writes them to ss[t], bs[t],
//   which only its own warp reads.
// - MMA: warp wp owns n rows wn = 32*wp .. +31 (4 n8 tiles j) and all 32 m rows (2 m16 tiles i):
//   A (x, row-major 16x16) comes from ldmatrix.x4, lane l addressing row 16i + (l & 15), column
//   16kk + 8*(l >> 4); B (bits, 16x8 "col": B[k][n] = bit k of row n) is built in registers: lane l
//   holds n = wn + 8j + l/4, k = 16kk + 2*(l%4) + {0,1} (reg b0) and +8 (reg b1), taken from word kk/2,
//   bit offset 16*(kk&1) + 2*(l%4), and expanded as ((v&1) | (v&2)<<15) * 0x3C00 (two f16 0/1 values).
// - Accumulator element e (0..3) of tile (i, j) is m = 16i + l/4 + 8*(e>>1), n = wn + 8j + 2*(l%4) + (e&1)
//   (the m16n8 C layout); each thread keeps P[2][4][4] and acc[2][4][4].
// - Tails: x rows >= M are the split's zero rows, W rows >= N copy as zeros (cp.async src-size 0);
//   neither is written. K is a multiple of 128.

import { COMMON, type KernelFile } from "./common.ts";

/** Output tile of one 256-thread block: BM rows of x (grid y) by BN rows of W (grid x). */
export const QMM_BM = 32;
export const QMM_BN = 256;
// shared-memory stages of qmm_q1_f32 and their bytes (xh + xl tiles, bit words, xsum)
const QMM_STAGES = 3, XST = 136;
const QMM_STAGE_BYTES = 2 * QMM_BM * XST * 2 + QMM_BN * 16 + QMM_BM * 4;

/** `smem`: the dynamic shared memory of one qmm_q1_f32 block (the stages, then scales and biases as
 *  f32), which the host must allow for the function (> 48 KiB). */
export const qmm_q1_f32: KernelFile & { smem: number } = {
  smem: QMM_STAGES * QMM_STAGE_BYTES + 2 * QMM_BN * 4,
  file: "qmm_q1_f32",
  kernels: ["qmm_x_split_f32", "qmm_q1_f32"],
  source: COMMON + /* cuda */ `
#define BM ${QMM_BM}
#define BN ${QMM_BN}
#define XST ${XST}
#define QS ${QMM_STAGES}
#define STAGE_BYTES ${QMM_STAGE_BYTES}
// x [M, K] -> xh, xl [Mp, K] (f16 halves), xs [G, Mp] (f32 group sums); rows M..Mp-1 as 0.
extern "C" __global__ void __launch_bounds__(256) qmm_x_split_f32(
    const float* __restrict__ x, u16* __restrict__ xh, u16* __restrict__ xl, float* __restrict__ xs, int M, int K, int Mp, int lo) {
  PDL_WAIT(); PDL_LAUNCH();
  const int G = K >> 7, l = threadIdx.x & 31, wg = blockIdx.x * 8 + (threadIdx.x >> 5);
  if (wg >= Mp * G) return;
  const int m = wg / G, g = wg - m * G;
  float v[4] = {0.f, 0.f, 0.f, 0.f};
  if (m < M) {
    const float* p = x + (size_t)m * K + g * 128 + 4 * l;
    if (((size_t)p & 15) == 0) { const float4 f = *reinterpret_cast<const float4*>(p); v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w; }
    else { v[0] = p[0]; v[1] = p[1]; v[2] = p[2]; v[3] = p[3]; }
  }
  u16 hi[4], xlo[4];
  #pragma unroll
  for (int c = 0; c < 4; c++) { hi[c] = f2h(v[c]); xlo[c] = f2h(v[c] - h2f(hi[c])); }
  const size_t o = (size_t)m * K + g * 128 + 4 * l;
  *reinterpret_cast<uint2*>(xh + o) = make_uint2(hi[0] | ((u32)hi[1] << 16), hi[2] | ((u32)hi[3] << 16));
  if (lo) *reinterpret_cast<uint2*>(xl + o) = make_uint2(xlo[0] | ((u32)xlo[1] << 16), xlo[2] | ((u32)xlo[3] << 16));
  const float s = warp_sum((v[0] + v[1]) + (v[2] + v[3]));
  if (l == 0) xs[(size_t)g * Mp + m] = s;
}

// two f16 values 0/1 from bits 0 and 1 of v (bit 0 in the low half)
__device__ __forceinline__ u32 bits_h2(u32 v) { return ((v & 1u) | ((v & 2u) << 15)) * 0x3C00u; }
__device__ __forceinline__ void ldsm_x4(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 16 bytes global -> shared, zero-filled when !valid (src must still be a mapped address)
__device__ __forceinline__ void cp16(u32 dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
template <bool LO>
__device__ __forceinline__ void qmm_q1(
    const u32* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const u16* __restrict__ xh, const u16* __restrict__ xl, const float* __restrict__ xs,
    float* __restrict__ out, int M, int N, int K, int Mp, unsigned char* smem) {
  float* ss = reinterpret_cast<float*>(smem + QS * STAGE_BYTES);
  float* bs = ss + BN;
  const u32 sbase = (u32)__cvta_generic_to_shared(smem);
  const int t = threadIdx.x, l = t & 31, wp = t >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int W = K >> 5, G = K >> 7;
  // stage st: xh tile at 0, xl tile at BM*XST*2, words at 2*BM*XST*2, xsum after them
  constexpr u32 XL = BM * XST * 2, WS = 2 * XL, XS = WS + BN * 16;
  const bool nv = n0 + t < N;
  const u32* wrow = w + (size_t)(nv ? n0 + t : 0) * W;
  // group gg into stage st: 2 x 512 chunks of x halves, 256 of words, 8 of xsum (always committed,
  // so that cp.async.wait_group counts stay uniform past the last group)
  auto issue = [&](int gg, int st) {
    if (gg < G) {
      const u32 sb = sbase + (u32)st * STAGE_BYTES;
      #pragma unroll
      for (int r = 0; r < 2; r++) {
        const int c = t + 256 * r, row = c >> 4, col = 8 * (c & 15);
        const size_t src = (size_t)(m0 + row) * K + 128 * gg + col;
        const u32 dst = sb + (u32)(row * XST + col) * 2u;
        cp16(dst, xh + src, true);
        if (LO) cp16(dst + XL, xl + src, true);
      }
      cp16(sb + WS + 16u * (u32)t, wrow + 4 * gg, nv);
      if (t < 8) cp16(sb + XS + 16u * (u32)t, xs + (size_t)gg * Mp + m0 + 4 * t, true);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  PDL_WAIT(); PDL_LAUNCH();
  #pragma unroll
  for (int s = 0; s < QS - 1; s++) issue(s, s);
  u16 ps = 0, pb = 0;
  if (nv) { ps = sc[(size_t)(n0 + t) * G]; pb = bi[(size_t)(n0 + t) * G]; }

  float acc[2][4][4];
  #pragma unroll
  for (int i = 0; i < 2; i++)
    #pragma unroll
    for (int j = 0; j < 4; j++)
      #pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

  int st = 0; // stage of group g
  for (int g = 0; g < G; g++) {
    asm volatile("cp.async.wait_group %0;" :: "n"(QS - 2) : "memory"); // this thread's copies of group g landed
    __syncthreads(); // everyone's copies landed; everyone is done with group g - 1's stage
    issue(g + QS - 1, st == 0 ? QS - 1 : st - 1);
    ss[t] = h2f(ps); bs[t] = h2f(pb); // read by this warp only
    if (nv && g + 1 < G) { ps = sc[(size_t)(n0 + t) * G + g + 1]; pb = bi[(size_t)(n0 + t) * G + g + 1]; }
    __syncwarp();
    const u32 sb = sbase + (u32)st * STAGE_BYTES;
    const u32* ws = reinterpret_cast<const u32*>(smem + st * STAGE_BYTES + WS);
    const float* xsum = reinterpret_cast<const float*>(smem + st * STAGE_BYTES + XS);

    float P[2][4][4];
    #pragma unroll
    for (int i = 0; i < 2; i++)
      #pragma unroll
      for (int j = 0; j < 4; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) P[i][j][e] = 0.f;
    #pragma unroll
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
          const u32 a = sb + (u32)((16 * i + (l & 15)) * XST + k) * 2u;
          ldsm_x4(ah[i], a);
          if (LO) ldsm_x4(al[i], a + XL);
        }
        #pragma unroll
        for (int j = 0; j < 4; j++) {
          const u32 u = wd[j] >> (16 * h + 2 * (l & 3));
          const u32 b0 = bits_h2(u & 3u), b1 = bits_h2((u >> 8) & 3u);
          #pragma unroll
          for (int i = 0; i < 2; i++) { mma16816(P[i][j], ah[i], b0, b1); if (LO) mma16816(P[i][j], al[i], b0, b1); }
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
    st = st == QS - 1 ? 0 : st + 1;
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");
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
extern "C" __global__ void __launch_bounds__(256, 2) qmm_q1_f32(
    const u32* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const u16* __restrict__ xh, const u16* __restrict__ xl, const float* __restrict__ xs,
    float* __restrict__ out, int M, int N, int K, int Mp, int lo) {
  extern __shared__ __align__(16) unsigned char smem[];
  if (lo) qmm_q1<true>(w, sc, bi, xh, xl, xs, out, M, N, K, Mp, smem);
  else qmm_q1<false>(w, sc, bi, xh, xl, xs, out, M, N, K, Mp, smem);
}
`,
};
