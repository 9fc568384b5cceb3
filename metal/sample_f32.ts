// Token sampling on the GPU, so only the token id crosses to the host each step. f32 logits.
// MSL twin of cuda/sample_f32.ts; the host oracle is src/backend/gpu-sample.ts.
//
// argmax_f32: greedy. Each float maps to an order-preserving u32 key; a thread packs
// (key << 32) | (0xffffffff - index) so one 64-bit max picks the largest logit and, on ties, the
// smallest index. Grid-stride loop, then the simdgroup max by the same shuffle-xor butterfly
// (64-bit values shuffled as two 32-bit halves).
// ONE DELIBERATE DIFFERENCE from CUDA: Metal has no portable 64-bit atomic max (only the newest
// GPU families have one), so instead of one atomicMax per warp into `best` the simdgroup maxima
// meet in threadgroup memory and thread 0 writes `best`. The host therefore dispatches exactly ONE
// threadgroup (1024 threads; 151k logits is ~150 per thread) and need not zero `best` first.
//
// sample_topk_topp_f32: one threadgroup of 1024 threads, the CUDA algorithm unchanged:
// 1. k = topK, or SAMPLE_CAP (1024) when topK <= 0 or larger; at most n.
// 2. The k-th largest key thr: a 32-step binary search, bit by bit from the top, keeping a bit
//    when at least k keys are >= the candidate (each step is a threadgroup-wide count).
// 3. Every index with key >= thr (ties included, at most 2048 kept) goes to threadgroup memory
//    (slots from a threadgroup atomic counter), then a bitonic sort orders them by
//    (logit desc, index asc).
// 4. p_i = exp((logit_i - logit_0) * invTemp); thread 0 forms the running sum c_i in order, keeps
//    the shortest prefix with c >= topP * c_total, and returns the first i with c_i > rand * c_kept.

import { COMMON, type KernelFile } from "./common.ts";

export const SAMPLE_CAP = 1024;
export const SAMPLE_MAX_CANDIDATES = 2048;

export const sample_f32: KernelFile = {
  file: "sample_f32",
  kernels: ["argmax_f32", "sample_topk_topp_f32"],
  source: COMMON + /* metal */ `
#define CAP ${SAMPLE_CAP}
#define MAXC ${SAMPLE_MAX_CANDIDATES}
inline u32 order_key(float v) {
  const u32 u = as_type<u32>(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

kernel void argmax_f32(device const float* x [[buffer(0)]], constant int& n [[buffer(1)]], device u64* best [[buffer(2)]],
                       uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                       uint bdim [[threads_per_threadgroup]], uint gdim [[threadgroups_per_grid]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup u64 sk[32];
  u64 b = 0;
  for (int i = int(bid * bdim + tid); i < n; i += int(gdim * bdim)) {
    const u64 key = ((u64)order_key(x[i]) << 32) | (u64)(0xffffffffu - (u32)i);
    b = key > b ? key : b;
  }
  #pragma unroll
  for (ushort o = 16; o > 0; o >>= 1) {
    const u32 hi = simd_shuffle_xor((u32)(b >> 32), o), lo = simd_shuffle_xor((u32)b, o);
    const u64 other = ((u64)hi << 32) | (u64)lo;
    b = other > b ? other : b;
  }
  if ((tid & 31) == 0) sk[tid >> 5] = b;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (tid == 0) {
    for (uint w = 1; w < (bdim >> 5); w++) b = sk[w] > b ? sk[w] : b;
    *best = b;
  }
}

inline int block_count(int c, threadgroup int* sh, uint tid, uint bdim) {
  #pragma unroll
  for (ushort o = 16; o > 0; o >>= 1) c += simd_shuffle_xor(c, o);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if ((tid & 31) == 0) sh[tid >> 5] = c;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  c = (tid & 31) < (bdim >> 5) ? sh[tid & 31] : 0;
  #pragma unroll
  for (ushort o = 16; o > 0; o >>= 1) c += simd_shuffle_xor(c, o);
  return c;
}

// a goes before b: larger logit first, then smaller index
inline bool before(u32 ka, int ia, u32 kb, int ib) { return ka > kb || (ka == kb && ia < ib); }

kernel void sample_topk_topp_f32(
    device const float* x [[buffer(0)]], constant int& n [[buffer(1)]], constant int& topK [[buffer(2)]],
    constant float& topP [[buffer(3)]], constant float& invTemp [[buffer(4)]], constant float& rand [[buffer(5)]],
    device u32* token [[buffer(6)]],
    uint tid_ [[thread_position_in_threadgroup]], uint bdim [[threads_per_threadgroup]]) {
  PDL_WAIT(); PDL_LAUNCH();
  threadgroup int shc[32];
  threadgroup u32 ck[MAXC];
  threadgroup int ci[MAXC];
  threadgroup float cp[MAXC];
  threadgroup atomic_int ncand;
  const int tid = int(tid_);
  int k = (topK <= 0 || topK > CAP) ? CAP : topK;
  if (k > n) k = n;
  u32 thr = 0;
  for (int bit = 31; bit >= 0; bit--) {
    const u32 cand = thr | (1u << bit);
    int c = 0;
    for (int i = tid; i < n; i += int(bdim)) c += order_key(x[i]) >= cand;
    if (block_count(c, shc, tid_, bdim) >= k) thr = cand;
  }
  if (tid == 0) atomic_store_explicit(&ncand, 0, memory_order_relaxed);
  for (int i = tid; i < MAXC; i += int(bdim)) { ck[i] = 0u; ci[i] = 0x7fffffff; }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int i = tid; i < n; i += int(bdim)) {
    const u32 key = order_key(x[i]);
    if (key >= thr) {
      const int slot = atomic_fetch_add_explicit(&ncand, 1, memory_order_relaxed);
      if (slot < MAXC) { ck[slot] = key; ci[slot] = i; }
    }
  }
  // bitonic sort of MAXC entries, 1024 threads = one compare-exchange each per stage
  for (int size = 2; size <= MAXC; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      threadgroup_barrier(mem_flags::mem_threadgroup);
      const int a = 2 * tid - (tid & (stride - 1)), b = a + stride;
      const bool up = (a & size) == 0; // this run is sorted "before"-first
      const bool sw = up ? before(ck[b], ci[b], ck[a], ci[a]) : before(ck[a], ci[a], ck[b], ci[b]);
      if (sw) {
        const u32 tk = ck[a]; ck[a] = ck[b]; ck[b] = tk;
        const int ti = ci[a]; ci[a] = ci[b]; ci[b] = ti;
      }
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const int cnt = min(atomic_load_explicit(&ncand, memory_order_relaxed), MAXC);
  const float top = x[ci[0]];
  for (int i = tid; i < cnt; i += int(bdim)) cp[i] = precise::exp((x[ci[i]] - top) * invTemp);
  threadgroup_barrier(mem_flags::mem_threadgroup);
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
