// rmsnorm_f32: out[r, :] = x[r, :] * 1/sqrt(mean(x[r, :]^2) + eps) * weight[:]; f32 throughout.
// MSL twin of cuda/rmsnorm_f32.ts.
//
// Thread -> data mapping: one threadgroup (256 threads) per row; each thread sums squares over
// columns i, i + 256, ...; block_sum (simdgroup butterflies, then one simdgroup over the partial
// sums) gives the row's sum; then each thread scales its columns. out may equal x (each element
// is read before it is written, by the same thread).

import { COMMON, type KernelFile } from "./common.ts";

export const rmsnorm_f32: KernelFile = {
  file: "rmsnorm_f32",
  kernels: ["rmsnorm_f32"],
  source: COMMON + /* metal */ `
kernel void rmsnorm_f32(device const float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
                        device float* out [[buffer(2)]], constant int& dim [[buffer(3)]],
                        constant float& eps [[buffer(4)]],
                        uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                        uint bdim [[threads_per_threadgroup]]) {
  threadgroup float sh[32];
  const ulong o = (ulong)bid * dim;
  float ss = 0.f;
  for (int i = int(tid); i < dim; i += int(bdim)) { const float v = x[o + i]; ss += v * v; }
  ss = block_sum(ss, sh, tid, bdim);
  const float inv = 1.0f / precise::sqrt(ss / (float)dim + eps);
  for (int i = int(tid); i < dim; i += int(bdim)) out[o + i] = x[o + i] * inv * weight[i];
}
`,
};
