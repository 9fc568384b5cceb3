// qmv_q1_f32: the fast 1-bit decode matvec, y[N] = W[N, K] x[K], through a nibble lookup table.
// MSL twin of cuda/qmv_q1_f32.ts (read its header: the algorithm and the mapping are the same),
// scaled to Apple GPUs' 32 KiB of threadgroup memory. f32 activations, f32 sums, f16 scales/biases:
//   sum_k x_k w_k = s_g * sum_{bit k set} x_k + b_g * sx_g,   sx_g = sum of x over group g.
//
// Where this differs from CUDA, on purpose (also listed in metal/README.md and test/metal-twins.test.ts):
// - Table size. CUDA's slab (32 groups, 4096 columns) is 64 KiB; here one half slab of 16 groups
//   (K <= QMV_MAX_K = 2048) fills the whole 32 KiB, so the fast kernel serves K <= 2048 (ITS = 1
//   only, no ITS = 2, 3 register path) and the host uses qmv_q1_f32_legacy above that, as CUDA does
//   above its QMV_MAX_K = 12288. Lanes 16..31 have no group (CUDA: lanes >= G likewise).
// - Layout, in floats (no byte-address asm): word i, nibble j, value v of the group of lane l
//   (l < 16) is lut[256*(8i + j) + 16*v + l]; the lane's base is l (bits 0..3), nib<J> puts v in
//   bits 4..7, so base | nib == base + nib, as in CUDA. No alignment padding is needed.
// - sx is not stored (no room left): after the barrier each lane sums the v = 15 entries of its
//   group (each is (x0 + x1) + (x2 + x3) of one float4, the same values CUDA's warps sum), in the
//   order of CUDA's shuffle-xor butterfly as lane 0 sees it, so sx is bit-identical.
// - The weight ring: no cp.async in Metal. Each lane's QMV_RING = 4 slots (CUDA: 12 in shared
//   memory) are registers filled by plain device loads, issued QMV_RING - QMV_RING_STEP rows
//   ahead; no commit/wait is needed since a lane only reads its own registers.
// - The grid: Metal reports no core count, so the host caps the persistent grid with a constant
//   (src/backend/metal/backend.ts) instead of #SMs.
// Limits: K a multiple of 128 and K <= QMV_MAX_K; x 16-byte aligned; a pipeline allowing 512
// threads. Otherwise the host uses qmv_q1_f32_legacy.
// Exactness: as on CUDA, bit-identical to the CPU oracle for small-integer x and power-of-two
// scales/biases, in any summation order.

import { COMMON, type KernelFile } from "./common.ts";

/** Threads per threadgroup (16 simdgroups); persistent over rows. */
export const QMV_THREADS = 512;
/** Largest K the table fits for: one half slab (16 groups) of 32 KiB in threadgroup memory. */
export const QMV_MAX_K = 2048;
/** Ring slots (rows) per simdgroup, in registers. */
export const QMV_RING = 4;
/** Threadgroup memory for in-features K: ceil(K/2048) half slabs of 32 KiB (the table only). */
export const qmvSharedBytes = (K: number): number => Math.ceil(K / 2048) * 32768;
/** Rows per step of the ring loop (their loads and warp sums overlap); divides QMV_RING. */
export const QMV_RING_STEP = 2;
/** The most any K <= QMV_MAX_K needs (the kernel's threadgroup memory). */
export const qmvMaxSharedBytes = qmvSharedBytes(QMV_MAX_K);

export const qmv_q1_f32: KernelFile = {
  file: "qmv_q1_f32",
  kernels: ["qmv_q1_f32"],
  source: COMMON + /* metal */ `
#define THREADS ${QMV_THREADS}
#define WARPS (THREADS / 32)
#define LANES 16 // groups (lanes) of the half slab

// Nibble J of w moved to bits 4..7 (the table's v field, in floats), other bits masked off.
template <int J> inline u32 nib(u32 w) {
  return (J * 4 >= 4 ? (w >> (J * 4 - 4)) : (w << (4 - J * 4))) & 0xF0u;
}
// Table entry at float index a + IMM (a: base | nib).
#define LUT(acc, a, IMM) { acc += lut[(a) + (IMM)]; }

// Sum of x over the set bits of word I of a group; base = lane (bits 4..7 clear).
template <int I> inline void word_part(u32 wi, u32 base, threadgroup const float* lut, thread float* a) {
  LUT(a[0], base | nib<0>(wi), 256 * (8 * I + 0));
  LUT(a[1], base | nib<1>(wi), 256 * (8 * I + 1));
  LUT(a[2], base | nib<2>(wi), 256 * (8 * I + 2));
  LUT(a[3], base | nib<3>(wi), 256 * (8 * I + 3));
  LUT(a[0], base | nib<4>(wi), 256 * (8 * I + 4));
  LUT(a[1], base | nib<5>(wi), 256 * (8 * I + 5));
  LUT(a[2], base | nib<6>(wi), 256 * (8 * I + 6));
  LUT(a[3], base | nib<7>(wi), 256 * (8 * I + 7));
}
inline float group_part(const uint4 w, u32 base, threadgroup const float* lut) {
  float a[4] = {0.f, 0.f, 0.f, 0.f};
  word_part<0>(w.x, base, lut, a); word_part<1>(w.y, base, lut, a); word_part<2>(w.z, base, lut, a); word_part<3>(w.w, base, lut, a);
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// The table of the half slab; all x loads are issued before any math.
inline void build_table(device const float* x, int G, threadgroup float* lut, uint tid) {
  device const float4* x4 = reinterpret_cast<device const float4*>(x);
  constexpr int NP = LANES * 32 / THREADS; // positions per thread
  float4 xv[NP];
  #pragma unroll
  for (int k = 0; k < NP; k++) { // position q: l = q % 16, rest = q / 16 = i*8 + j
    const int q = int(tid) + k * THREADS, rest = q >> 4, g = q & 15;
    xv[k] = g < G ? x4[(4 * g + ((rest >> 3) & 3)) * 8 + (rest & 7)] : float4(0.f);
  }
  #pragma unroll
  for (int k = 0; k < NP; k++) {
    const int q = int(tid) + k * THREADS;
    const float4 v = xv[k];
    threadgroup float* t = lut + (q >> 4) * 256 + (q & 15); // entry v at t[16 * v]: consecutive threads, consecutive banks
    const float x01 = v.x + v.y, x23 = v.z + v.w;
    const float lo[4] = {0.f, v.x, v.y, x01};
    #pragma unroll
    for (int a = 0; a < 4; a++) {
      t[16 * (a + 0)] = lo[a];
      t[16 * (a + 4)] = lo[a] + v.z;
      t[16 * (a + 8)] = lo[a] + v.w;
      t[16 * (a + 12)] = lo[a] + x23;
    }
  }
}

// sx of the group at base: its 32 v = 15 entries summed as CUDA's shuffle-xor butterfly sums them
// into lane 0 (a[f] += a[f ^ o], o = 16 .. 1), so the value is CUDA's, bit for bit.
inline float group_sx(u32 base, threadgroup const float* lut) {
  float a[32];
  #pragma unroll
  for (int f = 0; f < 32; f++) a[f] = lut[256 * f + 16 * 15 + base];
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    #pragma unroll
    for (int f = 0; f < o; f++) a[f] = a[f] + a[f + o];
  return a[0];
}

// One item per row: each lane keeps its 16 bytes of each of the simdgroup's rows in a D-slot
// register ring (plain loads: Metal has no cp.async), D - RB rows ahead, with scale and bias.
// Rows go RB at a time in straight-line code so their table loads and their warp sums overlap.
template <int D, int RB>
inline void qmv_rows_ring(device const uint4* w, device const u16* sc, device const u16* bi,
                          device const float* x, device float* y, int N, int G,
                          threadgroup float* lut, uint tid, uint bid, uint gdim) {
  constexpr int T = D / RB; // steps per round
  const int lane = int(tid & 31), warp = int(tid >> 5), S = int(gdim) * WARPS;
  const u32 tbase = u32(lane & 15);
  const bool lane_ok = lane < G;
  uint4 wr[D];
  float sr[D], br[D];
  int r0 = int(bid) * WARPS + warp; // slot d of a round holds row r0 + d*S
  // rows rs + k*S, k < RB, into slots t*RB + k (a macro: MSL has no lambdas)
#define ISSUE(RS, TT) { \
    _Pragma("unroll") \
    for (int k = 0; k < RB; k++) { \
      const int r = (RS) + k * S, d = (TT) * RB + k; \
      const bool ok = r < N && lane_ok; \
      wr[d] = uint4(0u); sr[d] = 0.f; br[d] = 0.f; \
      if (ok) { const ulong o = (ulong)r * G + lane; wr[d] = w[o]; sr[d] = h2f(sc[o]); br[d] = h2f(bi[o]); } \
    } }
  #pragma unroll
  for (int t = 0; t < T - 1; t++) ISSUE(r0 + t * RB * S, t);
  PDL_WAIT(); PDL_LAUNCH(); // x comes from the previous kernel; the weights did not
  build_table(x, G, lut, tid);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const float sxl = lane < LANES ? group_sx(tbase, lut) : 0.f;
  for (; r0 < N; r0 += D * S) {
    #pragma unroll
    for (int t = 0; t < T; t++) {
      const int rs = r0 + t * RB * S;
      if (rs >= N) break; // rows only grow from here
      ISSUE(rs + (D - RB) * S, (t + T - 1) % T);
      float a[RB];
      #pragma unroll
      for (int k = 0; k < RB; k++) {
        const int d = t * RB + k;
        a[k] = sr[d] * group_part(wr[d], tbase, lut) + br[d] * sxl;
      }
      #pragma unroll
      for (ushort o = 16; o > 0; o >>= 1)
        #pragma unroll
        for (int k = 0; k < RB; k++) a[k] += simd_shuffle_xor(a[k], o);
      if (lane == 0) {
        #pragma unroll
        for (int k = 0; k < RB; k++) if (rs + k * S < N) y[rs + k * S] = a[k];
      }
    }
  }
#undef ISSUE
}

kernel void qmv_q1_f32(
    device const uint4* w [[buffer(0)]], device const u16* sc [[buffer(1)]], device const u16* bi [[buffer(2)]],
    device const float* x [[buffer(3)]], device float* y [[buffer(4)]],
    constant int& N [[buffer(5)]], constant int& K [[buffer(6)]],
    uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
    uint gdim [[threadgroups_per_grid]], threadgroup float* lut [[threadgroup(0)]]) {
  // PDL_WAIT comes after the weight prefetch, before build_table (as in the CUDA twin)
  const int G = K >> 7; // <= 16: the host checks K <= QMV_MAX_K
  qmv_rows_ring<${QMV_RING}, ${QMV_RING_STEP}>(w, sc, bi, x, y, N, G, lut, tid, bid, gdim);
}
`,
};
