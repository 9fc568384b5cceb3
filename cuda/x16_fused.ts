// The kernels that feed qmv_q1_bmma, with its x quantization fused in (CUDA only, like it):
// rmsnorm_x16_f32:     out = rmsnorm(x) * weight                          and xq = x16(out)
// add_rmsnorm_x16_f32: x += delta; out = rmsnorm(x) * weight              and xq = x16(out)
// swiglu_x16_f32:      out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]     and xq = x16(out)
// attention_combine_x16_f32: attention_combine_f32 for one query with head_dim 128, and xq = x16(out)
//                      (head h is group h), so the o projection needs no prep launch either
// For one row (decode): the host uses them when the bmma matvec is on and the vector's length is a
// multiple of 128 up to 12288, so the matvec that follows needs no qmv_x16_prep launch of its own.
// out is written exactly as rmsnorm_f32 / add_rmsnorm_f32 / swiglu_f32 would (up to the order of
// the f32 sum of squares); xq as qmv_x16_prep would from out (x16_group, cuda/qmv_q1_bmma.ts).
//
// Thread -> data mapping: warp w of the grid takes 128-element groups g = w, w + W, ... (W = warps
// in the grid); lane l holds elements 128g + 32j + l, j < 4 (the layout x16_group wants).
// The norms run in one block of 1024 threads (32 warps: one group each for 4096 = the 8B's
// hidden size; a group's quantization is a chain of shuffles and ballots, so groups go to as many
// warps as possible): a first pass sums the squares (and writes x += delta), a block sum, then a
// second pass scales its elements (kept in registers when each warp has one group, dim <= 4096; else
// read again), writes out and quantizes each group. The norm weights are fetched before the PDL wait.
// SwiGLU: ceil(G / 8) blocks of 256 threads, one pass. The merge: one block of 128 threads per head
// (thread d = dim d, cuda/attention_f32.ts att_merge); the head's 128 values meet in shared memory
// and warp 0 quantizes them.

import { ATT_CHUNK, ATT_MERGE } from "./attention_f32.ts";

import { COMMON, type KernelFile } from "./common.ts";
import { X16_QUANT } from "./qmv_q1_bmma.ts";

export const x16_fused: KernelFile = {
  file: "x16_fused",
  kernels: ["rmsnorm_x16_f32", "add_rmsnorm_x16_f32", "swiglu_x16_f32", "attention_combine_x16_f32"],
  source: COMMON + X16_QUANT + ATT_MERGE + /* cuda */ `
#define NT 1024
#define NTS 256
__device__ __forceinline__ void rms_x16(float* x, const float* delta, const float* __restrict__ w, float* out,
                                        u32* __restrict__ xq, int dim, float eps) {
  __shared__ float sh[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, G = dim >> 7;
  // one group per warp at most (dim <= 4096, every Bonsai hidden size): the second pass takes x
  // from registers instead of reading it again
  const bool one = G <= NT / 32;
  float ss = 0.f, keep[4] = {0.f, 0.f, 0.f, 0.f}, wk[4] = {0.f, 0.f, 0.f, 0.f};
  // the norm's weights are read-only: fetched before waiting for the kernel before (PDL)
  if (one && warp < G) {
    #pragma unroll
    for (int j = 0; j < 4; j++) wk[j] = w[128 * warp + 32 * j + lane];
  }
  PDL_WAIT(); PDL_LAUNCH();
  for (int g = warp; g < G; g += NT / 32) {
    #pragma unroll
    for (int j = 0; j < 4; j++) {
      const int k = 128 * g + 32 * j + lane;
      float a = x[k];
      if (delta) { a += delta[k]; x[k] = a; }
      ss += a * a;
      keep[j] = a;
    }
  }
  ss = block_sum(ss, sh);
  const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
  for (int g = warp; g < G; g += NT / 32) {
    float v[4];
    #pragma unroll
    for (int j = 0; j < 4; j++) {
      const int k = 128 * g + 32 * j + lane; // this thread wrote x[k] above, if it changed
      v[j] = one ? keep[j] * inv * wk[j] : x[k] * inv * w[k];
      out[k] = v[j];
    }
    x16_group(v, xq, g, G);
  }
}

extern "C" __global__ void __launch_bounds__(NT) rmsnorm_x16_f32(float* x, const float* __restrict__ weight, float* out,
                                                                 u32* __restrict__ xq, int dim, float eps) {
  rms_x16(x, nullptr, weight, out, xq, dim, eps); // (waits inside, after fetching the weights)
}

extern "C" __global__ void __launch_bounds__(NT) add_rmsnorm_x16_f32(float* x, const float* delta, const float* __restrict__ weight,
                                                                     float* out, u32* __restrict__ xq, int dim, float eps) {
  rms_x16(x, delta, weight, out, xq, dim, eps); // (waits inside, after fetching the weights)
}

extern "C" __global__ void __launch_bounds__(NTS) swiglu_x16_f32(const float* gate, const float* up, float* out,
                                                                 u32* __restrict__ xq, int n) {
  PDL_WAIT(); PDL_LAUNCH();
  const int lane = threadIdx.x & 31, G = n >> 7;
  const int g = blockIdx.x * (NTS / 32) + (threadIdx.x >> 5);
  if (g >= G) return;
  float v[4];
  #pragma unroll
  for (int j = 0; j < 4; j++) {
    const int k = 128 * g + 32 * j + lane;
    const float a = gate[k];
    v[j] = a / (1.0f + expf(-a)) * up[k];
    out[k] = v[j];
  }
  x16_group(v, xq, g, G);
}

// one query (a decode step) at position pos = step[STEP_POS] + t0, head_dim 128 (the host checks)
extern "C" __global__ void __launch_bounds__(128) attention_combine_x16_f32(const float* __restrict__ part, float* __restrict__ out,
                                                                            const int* __restrict__ step, int nH, int S, int t0, u32* __restrict__ xq) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ float sh[128];
  const int h = blockIdx.x, d = threadIdx.x, len = step[STEP_POS] + t0 + 1;
  const float a = att_merge(part + (size_t)h * S * 130, (len + ${ATT_CHUNK} - 1) / ${ATT_CHUNK}, 128, d);
  out[(size_t)h * 128 + d] = a;
  sh[d] = a;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v[4];
    #pragma unroll
    for (int j = 0; j < 4; j++) v[j] = sh[32 * j + threadIdx.x];
    x16_group(v, xq, h, nH);
  }
}
`,
};
