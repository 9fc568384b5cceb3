// qmv_q1_f32: the fast 1-bit decode matvec, y[N] = W[N, K] x[K] (MLX / higgs design, see
// shared/reference/formats.md). f32 activations, f32 accumulation, f16 scales/biases.
//
// Thread -> data mapping
// - A warp (Metal: simdgroup) owns QMV_ROWS = 4 consecutive rows; a block holds 8 warps (32 rows).
// - Lane l of the warp owns 128-column groups g = l, l + 32, l + 64, ... of the row (one whole
//   quantization group each, so one scale and one bias per row per group). For each group it
//   issues one 16-byte load per row (the group's 128 bits = 4 words), two groups at a time so
//   8 loads are in flight before any math.
// - The block first stages all of x in shared memory (dynamic, K + K/32 floats): group g's 128
//   values start at float 132*g (4 floats of padding per group), so when the 32 lanes each read
//   their own group with 16-byte loads, every 8-lane phase hits 32 distinct banks. (Reading x
//   straight from global memory with this mapping touched 32 cache lines per load: 8x slower.)
// - x is read 32 values (one word's worth) at a time into registers (8 float4 loads) and reused
//   for all 4 rows. Per weight bit: acc += bit ? x : 0 (a select-add; no int->float per bit).
// - Per row and group: part = s * acc + b * sum_x(group). Lanes' parts are summed with a warp
//   reduction (shuffle xor; Metal: simd_sum) and lane 0 writes the row.
// - Tails: K is a multiple of 128 (format), so a lane's group is always whole; lanes with no group
//   left add nothing. Rows past N are clamped for loads and never written (N % 4 != 0 is fine).
// - x must be 16-byte aligned and K small enough for shared memory (K <= 49152); the host checks
//   and otherwise uses the legacy kernel. Launch with qmvSharedBytes(K) bytes of dynamic shared memory.

import { COMMON, type KernelFile } from "./common.ts";

export const QMV_ROWS = 4;
export const QMV_WARPS = 8;
/** Dynamic shared memory qmv_q1_f32 needs for in-features K: x with 4 floats of padding per group. */
export const qmvSharedBytes = (K: number): number => 4 * (K + 4 * (K / 128));

export const qmv_q1_f32: KernelFile = {
  file: "qmv_q1_f32",
  kernels: ["qmv_q1_f32"],
  source: COMMON + /* cuda */ `
#define R ${QMV_ROWS}

// acc[r] += s*sum_{bit set} x + b*sum x over the 128 columns of group g, for R rows.
__device__ __forceinline__ void qmv_group(const uint4 (&wv)[R], const float (&s)[R], const float (&b)[R],
                                          const float* __restrict__ x, int g, float (&acc)[R]) {
  const float4* xv = reinterpret_cast<const float4*>(x + 132 * g); // x staged in shared memory
  float part[R];
  #pragma unroll
  for (int r = 0; r < R; r++) part[r] = 0.f;
  float xs = 0.f;
  #pragma unroll
  for (int c = 0; c < 4; c++) {
    float xr[32];
    #pragma unroll
    for (int q = 0; q < 8; q++) {
      const float4 t = xv[c * 8 + q];
      xr[4 * q] = t.x; xr[4 * q + 1] = t.y; xr[4 * q + 2] = t.z; xr[4 * q + 3] = t.w;
    }
    #pragma unroll
    for (int j = 0; j < 32; j++) xs += xr[j];
    #pragma unroll
    for (int r = 0; r < R; r++) {
      const u32 word = c == 0 ? wv[r].x : c == 1 ? wv[r].y : c == 2 ? wv[r].z : wv[r].w;
      float a0 = 0.f, a1 = 0.f; // two chains for latency
      #pragma unroll
      for (int j = 0; j < 32; j += 2) {
        a0 += (word & (1u << j)) ? xr[j] : 0.f;
        a1 += (word & (1u << (j + 1))) ? xr[j + 1] : 0.f;
      }
      part[r] += a0 + a1;
    }
  }
  #pragma unroll
  for (int r = 0; r < R; r++) acc[r] += s[r] * part[r] + b[r] * xs;
}

extern "C" __global__ void __launch_bounds__(256) qmv_q1_f32(
    const uint4* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const float* __restrict__ x, float* __restrict__ y, int N, int K) {
  extern __shared__ __align__(16) float xsh[];
  const int G = K >> 7; // groups per row = uint4 per row
  {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* s4 = reinterpret_cast<float4*>(xsh);
    for (int i = threadIdx.x; i < (K >> 2); i += blockDim.x) s4[(i >> 5) * 33 + (i & 31)] = x4[i];
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
  if (row0 >= N) return;
  size_t base[R];
  #pragma unroll
  for (int r = 0; r < R; r++) base[r] = (size_t)min(row0 + r, N - 1) * G;
  float acc[R];
  #pragma unroll
  for (int r = 0; r < R; r++) acc[r] = 0.f;

  for (int g = lane; g < G; g += 64) {
    const int g2 = g + 32;
    const bool has2 = g2 < G;
    uint4 w1[R], w2[R];
    float s1[R], b1[R], s2[R], b2[R];
    #pragma unroll
    for (int r = 0; r < R; r++) {
      w1[r] = w[base[r] + g];
      s1[r] = h2f(sc[base[r] + g]); b1[r] = h2f(bi[base[r] + g]);
      if (has2) { w2[r] = w[base[r] + g2]; s2[r] = h2f(sc[base[r] + g2]); b2[r] = h2f(bi[base[r] + g2]); }
    }
    qmv_group(w1, s1, b1, xsh, g, acc);
    if (has2) qmv_group(w2, s2, b2, xsh, g2, acc);
  }
  #pragma unroll
  for (int r = 0; r < R; r++) acc[r] = warp_sum(acc[r]);
  if (lane == 0) {
    #pragma unroll
    for (int r = 0; r < R; r++) if (row0 + r < N) y[row0 + r] = acc[r];
  }
}
`,
};
