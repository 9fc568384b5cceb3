// rmsnorm_f32:     out[r, :] = x[r, :] * 1/sqrt(mean(x[r, :]^2) + eps) * weight[:]
// add_rmsnorm_f32: x[r, :] += delta[r, :]; then out[r, :] = rmsnorm(x[r, :]) * weight[:]
//                  (the residual add fused with the norm that follows it). f32 throughout.
//
// Thread -> data mapping: one block of 256 threads per row. When `vec` is set (dim % 4 == 0,
// dim <= 8192, 16-byte aligned rows; the host checks), thread i holds float4s i, i + 256, ... of the
// row and of the weights in registers (at most 8 each), so every load is in flight before the sum;
// else a plain strided loop reads the row twice. The block sums the squares (warp shuffles, then
// one warp over the warp sums), then each thread scales its own elements. out may equal x.

import { COMMON, type KernelFile } from "./common.ts";

export const RMS_THREADS = 256;
export const RMS_MAX_VEC_DIM = 4 * 8 * RMS_THREADS;

export const rmsnorm_f32: KernelFile = {
  file: "rmsnorm_f32",
  kernels: ["rmsnorm_f32", "add_rmsnorm_f32"],
  source: COMMON + /* cuda */ `
#define NT ${RMS_THREADS}
#define MAXV 8
// x (and delta, when given) -> x += delta; out = rmsnorm(x) * w, for one row
__device__ __forceinline__ void rms_row(float* x, const float* delta, const float* __restrict__ w, float* out,
                                        int dim, float eps, int vec, float* sh) {
  float ss = 0.f;
  if (vec) {
    const int n4 = dim >> 2;
    float4* x4 = reinterpret_cast<float4*>(x);
    float4 v[MAXV], g[MAXV];
    #pragma unroll
    for (int i = 0; i < MAXV; i++) {
      const int j = threadIdx.x + i * NT;
      if (j < n4) {
        g[i] = reinterpret_cast<const float4*>(w)[j]; // the weights load while the sum is formed
        float4 a = x4[j];
        if (delta) {
          const float4 b = reinterpret_cast<const float4*>(delta)[j];
          a.x += b.x; a.y += b.y; a.z += b.z; a.w += b.w;
          x4[j] = a;
        }
        v[i] = a;
        ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
      }
    }
    ss = block_sum(ss, sh);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    float4* o4 = reinterpret_cast<float4*>(out);
    #pragma unroll
    for (int i = 0; i < MAXV; i++) {
      const int j = threadIdx.x + i * NT;
      if (j < n4) o4[j] = make_float4(v[i].x * inv * g[i].x, v[i].y * inv * g[i].y, v[i].z * inv * g[i].z, v[i].w * inv * g[i].w);
    }
    return;
  }
  for (int i = threadIdx.x; i < dim; i += NT) {
    float a = x[i];
    if (delta) { a += delta[i]; x[i] = a; }
    ss += a * a;
  }
  ss = block_sum(ss, sh);
  const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
  for (int i = threadIdx.x; i < dim; i += NT) out[i] = x[i] * inv * w[i];
}

extern "C" __global__ void __launch_bounds__(NT) rmsnorm_f32(float* x, const float* __restrict__ weight, float* out,
                                                             int dim, float eps, int vec) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ float sh[32];
  const size_t o = (size_t)blockIdx.x * dim;
  rms_row(x + o, nullptr, weight, out + o, dim, eps, vec, sh);
}

extern "C" __global__ void __launch_bounds__(NT) add_rmsnorm_f32(float* x, const float* delta, const float* __restrict__ weight,
                                                                 float* out, int dim, float eps, int vec) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ float sh[32];
  const size_t o = (size_t)blockIdx.x * dim;
  rms_row(x + o, delta + o, weight, out + o, dim, eps, vec, sh);
}
`,
};
