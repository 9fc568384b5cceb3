// Helpers prepended to every CUDA kernel file. No #include: NVRTC compiles these without headers.
//
// Conventions shared by every kernel (and by their Metal twins in metal/):
// - Activations are f32 and every sum accumulates in f32.
// - 1-bit weights stay packed on the GPU: words u32 [N, K/32] (column 32c+j = bit j of word c),
//   scales and biases f16 [N, K/128]; w = scale * bit + bias.
// - The KV cache is f16: [layer][ctx][nKv][headDim] for k and for v.
// - Per-step values live in device memory, the "step" buffer written by setStep:
//   step[0] = first position of this step, step[1] = T (tokens this step), step[4 + t] = token id t.
//   Kernels read them there, so a captured CUDA graph replays a decode step unchanged.

export const COMMON = /* cuda */ `
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
#define STEP_POS 0
#define STEP_T 1
#define STEP_TOKENS 4
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)
// Programmatic dependent launch (Hopper): the host may start a kernel while the previous one in the
// stream still runs. PDL_WAIT blocks until that kernel has finished and its writes are visible; every
// kernel calls it before touching memory another kernel of the step writes, or writing memory another
// reads. Only what no kernel since the step's start writes may come first: weights, the KV rows of
// earlier steps, and the step buffer (written by a copy before the step's first kernel, which a
// kernel launched after a copy cannot overlap). PDL_LAUNCH lets the next kernel start as SMs free up.
// Both are no-ops when the kernel was launched normally, and compiled out before sm_90.
#if __CUDA_ARCH__ >= 900
#define PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#define PDL_LAUNCH() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#else
#define PDL_WAIT()
#define PDL_LAUNCH()
#endif

__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }

__device__ __forceinline__ float warp_sum(float v) {
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
  return v;
}
// Sum (or max) over the whole block (blockDim.x a multiple of 32); every thread gets the result.
// sh: 32 floats of shared memory.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* sh) {
  v = MAX ? warp_max(v) : warp_sum(v);
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  v = l < nw ? sh[l] : (MAX ? NEG_INF : 0.f);
  return MAX ? warp_max(v) : warp_sum(v);
}
__device__ __forceinline__ float block_sum(float v, float* sh) { return block_reduce<false>(v, sh); }
__device__ __forceinline__ float block_max(float v, float* sh) { return block_reduce<true>(v, sh); }
`;

/** One kernel file: its name (shared with metal/), CUDA C source, and the kernels it defines. */
export interface KernelFile {
  file: string;
  kernels: readonly string[];
  source: string;
}
