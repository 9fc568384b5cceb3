// rmsnorm_f32: out[r, :] = x[r, :] * 1/sqrt(mean(x[r, :]^2) + eps) * weight[:]; f32 throughout.
//
// Thread -> data mapping: one block (256 threads) per row; each thread sums squares over columns
// i, i + 256, ...; a block reduction (warp shuffles, then one warp over the warp sums) gives the
// row's sum; then each thread scales its columns. out may equal x (each element read before written
// by the same thread).

import { COMMON, type KernelFile } from "./common.ts";

export const rmsnorm_f32: KernelFile = {
  file: "rmsnorm_f32",
  kernels: ["rmsnorm_f32"],
  source: COMMON + /* cuda */ `
extern "C" __global__ void rmsnorm_f32(const float* x, const float* __restrict__ weight, float* out, int dim, float eps) {
  __shared__ float sh[32];
  const size_t o = (size_t)blockIdx.x * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) { const float v = x[o + i]; ss += v * v; }
  ss = block_sum(ss, sh);
  const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[o + i] = x[o + i] * inv * weight[i];
}
`,
};
