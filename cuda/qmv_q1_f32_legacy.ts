// qmv_q1_f32_legacy: the simple 1-bit matvec, y[N] = W[N, K] x[K]; f32 activations and sums.
//
// Thread -> data mapping
// - One warp (Metal: simdgroup) per row, 8 warps per block.
// - x is staged through shared memory in chunks of 1024 values (stored with one pad float per 32,
//   so lane l reading its 32 consecutive values hits distinct banks).
// - Within a chunk, lane l takes word l of the row (32 columns): acc over set bits (select-add),
//   sum of its 32 x values, then s*acc + b*sum with the scale/bias of that word's group.
// - Warp reduction; lane 0 writes. Rows past N skip the math but still join the barriers.
// Selected with BUNSAI_QMV_KERNEL=legacy, and used when x is not 16-byte aligned.

import { COMMON, type KernelFile } from "./common.ts";

export const qmv_q1_f32_legacy: KernelFile = {
  file: "qmv_q1_f32_legacy",
  kernels: ["qmv_q1_f32_legacy"],
  source: COMMON + /* cuda */ `
#define CHUNK 1024
extern "C" __global__ void __launch_bounds__(256) qmv_q1_f32_legacy(
    const u32* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const float* __restrict__ x, float* __restrict__ y, int N, int K) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ float xs[CHUNK + CHUNK / 32];
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int W = K >> 5, G = K >> 7;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += CHUNK) {
    const int n = min(CHUNK, K - k0);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) xs[i + (i >> 5)] = x[k0 + i];
    __syncthreads();
    if (row < N && lane < (n >> 5)) {
      const int wi = (k0 >> 5) + lane;
      const u32 word = w[(size_t)row * W + wi];
      const float* xl = xs + lane * 33;
      float a = 0.f, s = 0.f;
      #pragma unroll
      for (int j = 0; j < 32; j++) {
        const float v = xl[j];
        s += v;
        a += (word & (1u << j)) ? v : 0.f;
      }
      const int g = wi >> 2;
      acc += h2f(sc[(size_t)row * G + g]) * a + h2f(bi[(size_t)row * G + g]) * s;
    }
  }
  acc = warp_sum(acc);
  if (lane == 0 && row < N) y[row] = acc;
}
`,
};
