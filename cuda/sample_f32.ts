// Token sampling on the GPU, so only the token id crosses to the host each step. f32 logits.
// The host twin (the oracle) is src/backend/gpu-sample.ts; both follow the same definition.
//
// argmax_f32: greedy. Each float maps to an order-preserving u32 key; a thread packs
// (key << 32) | (0xffffffff - index) so one 64-bit max picks the largest logit and, on ties, the
// smallest index. Grid-stride loop, warp max by shuffles, one atomicMax per warp into best
// (zeroed by the host first). token = 0xffffffff - low word.
//
// sample_topk_topp_f32: one block of 1024 threads.
// 1. k = topK, or SAMPLE_CAP (1024) when topK <= 0 or larger; at most n.
// 2. The k-th largest key thr: a 32-step binary search, bit by bit from the top, keeping a bit
//    when at least k keys are >= the candidate (each step is a block-wide count).
// 3. Every index with key >= thr (ties included, at most 2048 kept) goes to shared memory, then a
//    bitonic sort orders them by (logit desc, index asc).
// 4. p_i = expf((logit_i - logit_0) * invTemp); thread 0 forms the running sum c_i in order, keeps
//    the shortest prefix with c >= topP * c_total, and returns the first i with c_i > rand * c_kept.

import { COMMON, type KernelFile } from "./common.ts";

export const SAMPLE_CAP = 1024;
export const SAMPLE_MAX_CANDIDATES = 2048;

export const sample_f32: KernelFile = {
  file: "sample_f32",
  kernels: ["argmax_f32", "sample_topk_topp_f32"],
  source: COMMON + /* cuda */ `
#define CAP ${SAMPLE_CAP}
#define MAXC ${SAMPLE_MAX_CANDIDATES}
__device__ __forceinline__ u32 order_key(float v) {
  const u32 u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

extern "C" __global__ void argmax_f32(const float* __restrict__ x, int n, u64* best) {
  PDL_WAIT(); PDL_LAUNCH();
  u64 b = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const u64 key = ((u64)order_key(x[i]) << 32) | (u64)(0xffffffffu - (u32)i);
    b = key > b ? key : b;
  }
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const u64 other = __shfl_xor_sync(FULL_MASK, b, o);
    b = other > b ? other : b;
  }
  if ((threadIdx.x & 31) == 0) atomicMax(best, b);
}

__device__ __forceinline__ int block_count(int c, int* sh) {
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(FULL_MASK, c, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = c;
  __syncthreads();
  c = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : 0;
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(FULL_MASK, c, o);
  return c;
}

// a goes before b: larger logit first, then smaller index
__device__ __forceinline__ bool before(u32 ka, int ia, u32 kb, int ib) { return ka > kb || (ka == kb && ia < ib); }

extern "C" __global__ void __launch_bounds__(1024) sample_topk_topp_f32(
    const float* __restrict__ x, int n, int topK, float topP, float invTemp, float rand, u32* token) {
  PDL_WAIT(); PDL_LAUNCH();
  __shared__ int shc[32];
  __shared__ u32 ck[MAXC];
  __shared__ int ci[MAXC];
  __shared__ float cp[MAXC];
  __shared__ int ncand;
  const int tid = threadIdx.x;
  int k = (topK <= 0 || topK > CAP) ? CAP : topK;
  if (k > n) k = n;
  u32 thr = 0;
  for (int bit = 31; bit >= 0; bit--) {
    const u32 cand = thr | (1u << bit);
    int c = 0;
    for (int i = tid; i < n; i += blockDim.x) c += order_key(x[i]) >= cand;
    if (block_count(c, shc) >= k) thr = cand;
  }
  if (tid == 0) ncand = 0;
  for (int i = tid; i < MAXC; i += blockDim.x) { ck[i] = 0u; ci[i] = 0x7fffffff; }
  __syncthreads();
  for (int i = tid; i < n; i += blockDim.x) {
    const u32 key = order_key(x[i]);
    if (key >= thr) {
      const int slot = atomicAdd(&ncand, 1);
      if (slot < MAXC) { ck[slot] = key; ci[slot] = i; }
    }
  }
  // bitonic sort of MAXC entries, 1024 threads = one compare-exchange each per stage
  for (int size = 2; size <= MAXC; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      const int a = 2 * tid - (tid & (stride - 1)), b = a + stride;
      const bool up = (a & size) == 0; // this run is sorted "before"-first
      const bool sw = up ? before(ck[b], ci[b], ck[a], ci[a]) : before(ck[a], ci[a], ck[b], ci[b]);
      if (sw) {
        const u32 tk = ck[a]; ck[a] = ck[b]; ck[b] = tk;
        const int ti = ci[a]; ci[a] = ci[b]; ci[b] = ti;
      }
    }
  }
  __syncthreads();
  const int cnt = min(ncand, MAXC);
  const float top = x[ci[0]];
  for (int i = tid; i < cnt; i += blockDim.x) cp[i] = expf((x[ci[i]] - top) * invTemp);
  __syncthreads();
  if (tid == 0) {
    float c = 0.f;
    for (int i = 0; i < cnt; i++) { c += cp[i]; cp[i] = c; }
    const float cut = topP * c;
    int keep = cnt;
    for (int i = 0; i < cnt; i++) if (cp[i] >= cut) { keep = i + 1; break; }
    const float u = rand * cp[keep - 1];
    int pick = keep - 1;
    for (int i = 0; i < keep; i++) if (cp[i] > u) { pick = i; break; }
    *token = (u32)ci[pick];
  }
}
`,
};
