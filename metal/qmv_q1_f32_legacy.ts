// qmv_q1_f32_legacy: the simple 1-bit matvec, y[N] = W[N, K] x[K]; f32 activations and sums.
// MSL twin of cuda/qmv_q1_f32_legacy.ts: same algorithm, same mapping.
//
// Thread -> data mapping
// - One simdgroup per row, 8 simdgroups per threadgroup.
// - x is staged through threadgroup memory in chunks of 1024 values (stored with one pad float per
//   32, so lane l reading its 32 consecutive values hits distinct banks).
// - Within a chunk, lane l takes word l of the row (32 columns): acc over set bits (select-add),
//   sum of its 32 x values, then s*acc + b*sum with the scale/bias of that word's group.
// - warp_sum butterfly; lane 0 writes. Rows past N skip the math but still join the barriers.
// Selected with BUNSAI_QMV_KERNEL=legacy, and used when x is not 16-byte aligned.

import { COMMON, type KernelFile } from "./common.ts";

export const qmv_q1_f32_legacy: KernelFile = {
  file: "qmv_q1_f32_legacy",
  kernels: ["qmv_q1_f32_legacy"],
  source: COMMON + /* metal */ `
#define CHUNK 1024
kernel void qmv_q1_f32_legacy(
    device const u32* w [[buffer(0)]], device const u16* sc [[buffer(1)]], device const u16* bi [[buffer(2)]],
    device const float* x [[buffer(3)]], device float* y [[buffer(4)]],
    constant int& N [[buffer(5)]], constant int& K [[buffer(6)]],
    uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
    uint bdim [[threads_per_threadgroup]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup float xs[CHUNK + CHUNK / 32];
  const int lane = int(tid & 31);
  const int row = int(bid * (bdim >> 5) + (tid >> 5));
  const int W = K >> 5, G = K >> 7;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += CHUNK) {
    const int n = min(CHUNK, K - k0);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int i = int(tid); i < n; i += int(bdim)) xs[i + (i >> 5)] = x[k0 + i];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (row < N && lane < (n >> 5)) {
      const int wi = (k0 >> 5) + lane;
      const u32 word = w[(ulong)row * W + wi];
      threadgroup const float* xl = xs + lane * 33;
      float a = 0.f, s = 0.f;
      #pragma unroll
      for (int j = 0; j < 32; j++) {
        const float v = xl[j];
        s += v;
        a += (word & (1u << j)) ? v : 0.f;
      }
      const int g = wi >> 2;
      acc += h2f(sc[(ulong)row * G + g]) * a + h2f(bi[(ulong)row * G + g]) * s;
    }
  }
  acc = warp_sum(acc);
  if (lane == 0 && row < N) y[row] = acc;
}
`,
};
