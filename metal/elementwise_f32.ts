// swiglu_f32: out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up   (precise::exp)
// add_f32:    out[i] = a[i] + b[i]
// MSL twin of cuda/elementwise_f32.ts. f32 throughout. Thread -> data mapping: a grid-stride loop,
// one element per thread per pass. out may alias an input (each element is read then written by
// the same thread), so these pointers are not restrict-qualified.

import { COMMON, type KernelFile } from "./common.ts";

export const elementwise_f32: KernelFile = {
  file: "elementwise_f32",
  kernels: ["swiglu_f32", "add_f32"],
  source: COMMON + /* metal */ `
kernel void swiglu_f32(device const float* gate [[buffer(0)]], device const float* up [[buffer(1)]],
                       device float* out [[buffer(2)]], constant int& n [[buffer(3)]],
                       uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                       uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  for (int i = int(bid * bdim + tid); i < n; i += int(gdim * bdim)) {
    const float g = gate[i];
    out[i] = g / (1.0f + precise::exp(-g)) * up[i];
  }
}
kernel void add_f32(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]],
                    device float* out [[buffer(2)]], constant int& n [[buffer(3)]],
                    uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                    uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  for (int i = int(bid * bdim + tid); i < n; i += int(gdim * bdim)) out[i] = a[i] + b[i];
}
`,
};
