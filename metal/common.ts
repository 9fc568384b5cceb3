// Helpers prepended to every Metal kernel file: the MSL twin of cuda/common.ts.
//
// Conventions shared by every kernel (identical to cuda/common.ts; the twins must agree):
// - Activations are f32 and every sum accumulates in f32.
// - 1-bit weights stay packed on the GPU: words u32 [N, K/32] (column 32c+j = bit j of word c),
//   scales and biases f16 [N, K/128]; w = scale * bit + bias.
// - The KV cache is f16: [layer][ctx][nKv][headDim] for k and for v.
// - Per-step values live in device memory, the "step" buffer written by setStep:
//   step[0] = first position of this step, step[1] = T (tokens this step), step[4 + t] = token id t.
//
// CUDA -> MSL mapping used by every twin
// - warp -> simdgroup (32 lanes on every Apple GPU; the host refuses a pipeline whose
//   threadExecutionWidth is not 32). block -> threadgroup, __shared__ -> threadgroup.
// - threadIdx.x / blockIdx.x / blockDim.x / gridDim.x -> kernel arguments tid / bid / bdim / gdim
//   ([[thread_position_in_threadgroup]], [[threadgroup_position_in_grid]], [[threads_per_threadgroup]],
//   [[threadgroups_per_grid]]): uint for 1-D grids; a kernel with a 2-D or 3-D grid declares all of
//   them uint3 (MSL wants one vector width across them) and reads .x/.y/.z.
// - Kernel parameter i of the CUDA kernel is [[buffer(i)]] here, with the same name; scalars arrive
//   as `constant T&`. test/metal-twins.test.ts checks names, order and indices.
// - __shfl_xor_sync -> simd_shuffle_xor with the same butterfly, so sums add in the same order.
// - __syncthreads() -> threadgroup_barrier(mem_flags::mem_threadgroup).

export const COMMON = /* metal */ `
#include <metal_stdlib>
using namespace metal;
typedef uint u32;
typedef ushort u16;
typedef ulong u64;
#define STEP_POS 0
#define STEP_T 1
#define STEP_TOKENS 4
#define FULL_MASK 0xffffffffu
#define NEG_INF (-INFINITY)
// CUDA's programmatic dependent launch has no Metal counterpart: within one command buffer's serial
// compute encoder each dispatch already starts after the previous one. Kept as no-ops at the same
// places as in the CUDA twins.
#define PDL_WAIT()
#define PDL_LAUNCH()

// f16 bits <-> f32; half(f) rounds to nearest even, like cvt.rn.f16.f32.
inline float h2f(u16 h) { return float(as_type<half>(h)); }
inline u16 f2h(float f) { return as_type<u16>(half(f)); }

inline float warp_sum(float v) {
  for (ushort o = 16; o > 0; o >>= 1) v += simd_shuffle_xor(v, o);
  return v;
}
inline float warp_max(float v) {
  for (ushort o = 16; o > 0; o >>= 1) v = fmax(v, simd_shuffle_xor(v, o));
  return v;
}
// Sum (or max) over the whole threadgroup (bdim a multiple of 32); every thread gets the result.
// sh: 32 floats of threadgroup memory.
template <bool MAX>
inline float block_reduce(float v, threadgroup float* sh, uint tid, uint bdim) {
  v = MAX ? warp_max(v) : warp_sum(v);
  const int w = int(tid >> 5), l = int(tid & 31), nw = int(bdim >> 5);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (l == 0) sh[w] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  v = l < nw ? sh[l] : (MAX ? NEG_INF : 0.f);
  return MAX ? warp_max(v) : warp_sum(v);
}
inline float block_sum(float v, threadgroup float* sh, uint tid, uint bdim) { return block_reduce<false>(v, sh, tid, bdim); }
inline float block_max(float v, threadgroup float* sh, uint tid, uint bdim) { return block_reduce<true>(v, sh, tid, bdim); }
`;

/** One kernel file: its name (shared with cuda/), MSL source, and the kernels it defines. */
export interface KernelFile {
  file: string;
  kernels: readonly string[];
  source: string;
}
