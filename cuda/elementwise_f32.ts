// swiglu_f32: out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up   (accurate expf)
// swiglu_rows_f32: out[r * n + i] = silu(gu[r * 2n + i]) * gu[r * 2n + n + i]: the stacked gate/up
//             projection of a prefill pass, without copying its halves apart first
// copy2d_f32: dst[r * dstStride + c] = src[r * srcStride + c], r < rows, c < cols (one element per
//             thread per pass of a grid-stride loop over rows * cols; src and dst do not overlap)
// add_f32:    out[i] = a[i] + b[i]
// f32 throughout. Thread -> data mapping: a grid-stride loop, one element per thread per pass.
// out may alias an input (each element is read then written by the same thread).

import { COMMON, type KernelFile } from "./common.ts";

export const elementwise_f32: KernelFile = {
  file: "elementwise_f32",
  kernels: ["swiglu_f32", "swiglu_rows_f32", "copy2d_f32", "add_f32"],
  source: COMMON + /* cuda */ `
extern "C" __global__ void swiglu_f32(const float* gate, const float* up, float* out, int n) {
  PDL_WAIT(); PDL_LAUNCH();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}
extern "C" __global__ void swiglu_rows_f32(const float* __restrict__ gu, float* __restrict__ out, int rows, int n) {
  PDL_WAIT(); PDL_LAUNCH();
  const int total = rows * n; // the host keeps rows * 2n < 2^31
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int r = i / n, c = i - r * n;
    const float g = gu[(size_t)r * 2 * n + c];
    out[i] = g / (1.0f + expf(-g)) * gu[(size_t)r * 2 * n + n + c];
  }
}
extern "C" __global__ void copy2d_f32(const float* __restrict__ src, float* __restrict__ dst, int srcStride, int dstStride, int rows, int cols) {
  PDL_WAIT(); PDL_LAUNCH();
  const int n = rows * cols;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int r = i / cols, c = i - r * cols;
    dst[(size_t)r * dstStride + c] = src[(size_t)r * srcStride + c];
  }
}
extern "C" __global__ void add_f32(const float* a, const float* b, float* out, int n) {
  PDL_WAIT(); PDL_LAUNCH();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = a[i] + b[i];
}
`,
};
