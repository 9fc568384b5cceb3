// swiglu_f32: out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up   (precise::exp)
// swiglu_rows_f32: out[r * n + i] = silu(gu[r * 2n + i]) * gu[r * 2n + n + i]: the stacked gate/up
//             projection of a prefill pass, without copying its halves apart first
// copy2d_f32: dst[r * dstStride + c] = src[r * srcStride + c], r < rows, c < cols (one element per
//             thread per pass of a grid-stride loop over rows * cols; src and dst do not overlap)
// add_f32:    out[i] = a[i] + b[i]
// MSL twin of cuda/elementwise_f32.ts. f32 throughout. Thread -> data mapping: a grid-stride loop,
// one element per thread per pass. out may alias an input (each element is read then written by
// the same thread), so these pointers are not restrict-qualified.

import { COMMON, type KernelFile } from "./common.ts";

export const elementwise_f32: KernelFile = {
  file: "elementwise_f32",
  kernels: ["swiglu_f32", "swiglu_rows_f32", "copy2d_f32", "add_f32"],
  source: COMMON + /* metal */ `
kernel void swiglu_f32(device const float* gate [[buffer(0)]], device const float* up [[buffer(1)]],
                       device float* out [[buffer(2)]], constant int& n [[buffer(3)]],
                       uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                       uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  for (int i = int(bid * bdim + tid); i < n; i += int(gdim * bdim)) {
    const float g = gate[i];
    out[i] = g / (1.0f + precise::exp(-g)) * up[i];
  }
}
kernel void swiglu_rows_f32(device const float* gu [[buffer(0)]], device float* out [[buffer(1)]],
                            constant int& rows [[buffer(2)]], constant int& n [[buffer(3)]],
                            uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                            uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  const int total = rows * n; // the host keeps rows * 2n < 2^31
  for (int i = int(bid * bdim + tid); i < total; i += int(gdim * bdim)) {
    const int r = i / n, c = i - r * n;
    const float g = gu[(ulong)r * 2 * n + c];
    out[i] = g / (1.0f + precise::exp(-g)) * gu[(ulong)r * 2 * n + n + c];
  }
}
kernel void copy2d_f32(device const float* src [[buffer(0)]], device float* dst [[buffer(1)]],
                       constant int& srcStride [[buffer(2)]], constant int& dstStride [[buffer(3)]],
                       constant int& rows [[buffer(4)]], constant int& cols [[buffer(5)]],
                       uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                       uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  const int n = rows * cols;
  for (int i = int(bid * bdim + tid); i < n; i += int(gdim * bdim)) {
    const int r = i / cols, c = i - r * cols;
    dst[(ulong)r * dstStride + c] = src[(ulong)r * srcStride + c];
  }
}
kernel void add_f32(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]],
                    device float* out [[buffer(2)]], constant int& n [[buffer(3)]],
                    uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                    uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  for (int i = int(bid * bdim + tid); i < n; i += int(gdim * bdim)) out[i] = a[i] + b[i];
}
`,
};
