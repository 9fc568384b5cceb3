// qmv_q1_f32: the fast 1-bit decode matvec, y[N] = W[N, K] x[K] (MLX / higgs design, see
// shared/reference/formats.md). MSL twin of cuda/qmv_q1_f32.ts: same algorithm, same mapping.
//
// Thread -> data mapping
// - A simdgroup owns QMV_ROWS = 4 consecutive rows; a threadgroup holds 8 simdgroups (32 rows).
// - Lane l owns 128-column groups g = l, l + 32, l + 64, ... of the row (one whole quantization
//   group each: one scale and one bias per row per group). Per group it loads one uint4 per row
//   (the group's 128 bits), two groups at a time so 8 loads are in flight before any math.
// - The threadgroup first stages all of x in threadgroup memory (dynamic, K + K/32 floats): group
//   g's 128 values start at float 132*g (4 floats of padding per group), so the 32 lanes reading
//   their own groups with 16-byte loads spread over the banks.
// - x is read 32 values at a time into registers (8 float4 loads) and reused for all 4 rows.
//   Per weight bit: acc += bit ? x : 0 (a select-add; no int->float per bit).
// - Per row and group: part = s * acc + b * sum_x(group). Lanes' parts are summed with the
//   simd_shuffle_xor butterfly (warp_sum) and lane 0 writes the row.
// - Tails: K is a multiple of 128, so a lane's group is always whole; lanes with no group left add
//   nothing. Rows past N are clamped for loads and never written (N % 4 != 0 is fine).
// - x and w must be 16-byte aligned and the staged x must fit threadgroup memory: qmvSharedBytes(K)
//   <= 32 KiB on Apple GPUs, i.e. K <= 7936 (CUDA allows K <= 49152). The host checks and otherwise
//   uses the legacy kernel; it binds qmvSharedBytes(K) bytes at [[threadgroup(0)]].

import { COMMON, type KernelFile } from "./common.ts";

export const QMV_ROWS = 4;
export const QMV_WARPS = 8;
/** Dynamic threadgroup memory qmv_q1_f32 needs for in-features K: x with 4 floats of padding per group. */
export const qmvSharedBytes = (K: number): number => 4 * (K + 4 * (K / 128));

export const qmv_q1_f32: KernelFile = {
  file: "qmv_q1_f32",
  kernels: ["qmv_q1_f32"],
  source: COMMON + /* metal */ `
#define R ${QMV_ROWS}

// acc[r] += s*sum_{bit set} x + b*sum x over the 128 columns of group g, for R rows.
inline void qmv_group(thread const uint4* wv, thread const float* s, thread const float* b,
                      threadgroup const float* x, int g, thread float* acc) {
  threadgroup const float4* xv = reinterpret_cast<threadgroup const float4*>(x + 132 * g); // x staged
  float part[R];
  #pragma unroll
  for (int r = 0; r < R; r++) part[r] = 0.f;
  float xs = 0.f;
  #pragma unroll
  for (int c = 0; c < 4; c++) {
    float xr[32];
    #pragma unroll
    for (int q = 0; q < 8; q++) {
      const float4 t = xv[c * 8 + q];
      xr[4 * q] = t.x; xr[4 * q + 1] = t.y; xr[4 * q + 2] = t.z; xr[4 * q + 3] = t.w;
    }
    #pragma unroll
    for (int j = 0; j < 32; j++) xs += xr[j];
    #pragma unroll
    for (int r = 0; r < R; r++) {
      const u32 word = c == 0 ? wv[r].x : c == 1 ? wv[r].y : c == 2 ? wv[r].z : wv[r].w;
      float a0 = 0.f, a1 = 0.f; // two chains for latency
      #pragma unroll
      for (int j = 0; j < 32; j += 2) {
        a0 += (word & (1u << j)) ? xr[j] : 0.f;
        a1 += (word & (1u << (j + 1))) ? xr[j + 1] : 0.f;
      }
      part[r] += a0 + a1;
    }
  }
  #pragma unroll
  for (int r = 0; r < R; r++) acc[r] += s[r] * part[r] + b[r] * xs;
}

kernel void qmv_q1_f32(
    device const uint4* w [[buffer(0)]], device const u16* sc [[buffer(1)]], device const u16* bi [[buffer(2)]],
    device const float* x [[buffer(3)]], device float* y [[buffer(4)]],
    constant int& N [[buffer(5)]], constant int& K [[buffer(6)]],
    uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
    uint bdim [[threads_per_threadgroup]], threadgroup float* xsh [[threadgroup(0)]]) {
  const int G = K >> 7; // groups per row = uint4 per row
  {
    device const float4* x4 = reinterpret_cast<device const float4*>(x);
    threadgroup float4* s4 = reinterpret_cast<threadgroup float4*>(xsh);
    for (int i = int(tid); i < (K >> 2); i += int(bdim)) s4[(i >> 5) * 33 + (i & 31)] = x4[i];
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const int lane = int(tid & 31);
  const int row0 = int(bid * (bdim >> 5) + (tid >> 5)) * R;
  if (row0 >= N) return;
  ulong base[R];
  #pragma unroll
  for (int r = 0; r < R; r++) base[r] = (ulong)min(row0 + r, N - 1) * G;
  float acc[R];
  #pragma unroll
  for (int r = 0; r < R; r++) acc[r] = 0.f;

  for (int g = lane; g < G; g += 64) {
    const int g2 = g + 32;
    const bool has2 = g2 < G;
    uint4 w1[R], w2[R];
    float s1[R], b1[R], s2[R], b2[R];
    #pragma unroll
    for (int r = 0; r < R; r++) {
      w1[r] = w[base[r] + g];
      s1[r] = h2f(sc[base[r] + g]); b1[r] = h2f(bi[base[r] + g]);
      if (has2) { w2[r] = w[base[r] + g2]; s2[r] = h2f(sc[base[r] + g2]); b2[r] = h2f(bi[base[r] + g2]); }
    }
    qmv_group(w1, s1, b1, xsh, g, acc);
    if (has2) qmv_group(w2, s2, b2, xsh, g2, acc);
  }
  #pragma unroll
  for (int r = 0; r < R; r++) acc[r] = warp_sum(acc[r]);
  if (lane == 0) {
    #pragma unroll
    for (int r = 0; r < R; r++) if (row0 + r < N) y[row0 + r] = acc[r];
  }
}
`,
};
