// rmsnorm_f32:     out[r, :] = x[r, :] * 1/sqrt(mean(x[r, :]^2) + eps) * weight[:]
// add_rmsnorm_f32: x[r, :] += delta[r, :]; then out[r, :] = rmsnorm(x[r, :]) * weight[:]
//                  (the residual add fused with the norm that follows it). f32 throughout.
// MSL twin of cuda/rmsnorm_f32.ts.
//
// Thread -> data mapping: one threadgroup of 256 threads per row. When `vec` is set (dim % 4 == 0,
// dim <= 8192, 16-byte aligned rows; the host checks), thread i holds float4s i, i + 256, ... of the
// row and of the weights in registers (at most 8 each), so every load is in flight before the sum;
// else a plain strided loop reads the row twice. The threadgroup sums the squares (simdgroup
// butterflies, then one simdgroup over the partial sums), then each thread scales its own elements.
// out may equal x.

import { COMMON, type KernelFile } from "./common.ts";

export const RMS_THREADS = 256;
export const RMS_MAX_VEC_DIM = 4 * 8 * RMS_THREADS;

export const rmsnorm_f32: KernelFile = {
  file: "rmsnorm_f32",
  kernels: ["rmsnorm_f32", "add_rmsnorm_f32"],
  source: COMMON + /* metal */ `
#define NT ${RMS_THREADS}
#define MAXV 8
// x (and delta, when given) -> x += delta; out = rmsnorm(x) * w, for one row
inline void rms_row(device float* x, device const float* delta, device const float* w, device float* out,
                    int dim, float eps, int vec, threadgroup float* sh, uint tid) {
  float ss = 0.f;
  if (vec) {
    const int n4 = dim >> 2;
    device float4* x4 = reinterpret_cast<device float4*>(x);
    float4 v[MAXV], g[MAXV];
    #pragma unroll
    for (int i = 0; i < MAXV; i++) {
      const int j = int(tid) + i * NT;
      if (j < n4) {
        g[i] = reinterpret_cast<device const float4*>(w)[j]; // the weights load while the sum is formed
        float4 a = x4[j];
        if (delta) {
          const float4 b = reinterpret_cast<device const float4*>(delta)[j];
          a.x += b.x; a.y += b.y; a.z += b.z; a.w += b.w;
          x4[j] = a;
        }
        v[i] = a;
        ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
      }
    }
    ss = block_sum(ss, sh, tid, NT);
    const float inv = 1.0f / precise::sqrt(ss / (float)dim + eps);
    device float4* o4 = reinterpret_cast<device float4*>(out);
    #pragma unroll
    for (int i = 0; i < MAXV; i++) {
      const int j = int(tid) + i * NT;
      if (j < n4) o4[j] = float4(v[i].x * inv * g[i].x, v[i].y * inv * g[i].y, v[i].z * inv * g[i].z, v[i].w * inv * g[i].w);
    }
    return;
  }
  for (int i = int(tid); i < dim; i += NT) {
    float a = x[i];
    if (delta) { a += delta[i]; x[i] = a; }
    ss += a * a;
  }
  ss = block_sum(ss, sh, tid, NT);
  const float inv = 1.0f / precise::sqrt(ss / (float)dim + eps);
  for (int i = int(tid); i < dim; i += NT) out[i] = x[i] * inv * w[i];
}

kernel void rmsnorm_f32(device float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
                        device float* out [[buffer(2)]], constant int& dim [[buffer(3)]],
                        constant float& eps [[buffer(4)]], constant int& vec [[buffer(5)]],
                        uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup float sh[32];
  const ulong o = (ulong)bid * dim;
  rms_row(x + o, nullptr, weight, out + o, dim, eps, vec, sh, tid);
}

kernel void add_rmsnorm_f32(device float* x [[buffer(0)]], device const float* delta [[buffer(1)]],
                            device const float* weight [[buffer(2)]], device float* out [[buffer(3)]],
                            constant int& dim [[buffer(4)]], constant float& eps [[buffer(5)]],
                            constant int& vec [[buffer(6)]],
                            uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup float sh[32];
  const ulong o = (ulong)bid * dim;
  rms_row(x + o, delta + o, weight, out + o, dim, eps, vec, sh, tid);
}
`,
};
