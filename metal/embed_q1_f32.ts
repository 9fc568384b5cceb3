// embed_q1_f32: out[t, :] = dequantized row tokens[t] of a packed 1-bit table [V, K].
// MSL twin of cuda/embed_q1_f32.ts. f32 output, f16 scales/biases. Token ids come from the step
// buffer (step[4 + t]); the host has checked them against V in setStep.
//
// Thread -> data mapping: one threadgroup per token t; thread i writes columns i, i + bdim, ...
// out = bit ? s + b : b with the scale/bias of the column's 128-group.

import { COMMON, type KernelFile } from "./common.ts";

export const embed_q1_f32: KernelFile = {
  file: "embed_q1_f32",
  kernels: ["embed_q1_f32"],
  source: COMMON + /* metal */ `
kernel void embed_q1_f32(device const u32* w [[buffer(0)]], device const u16* sc [[buffer(1)]],
                         device const u16* bi [[buffer(2)]], device const int* step [[buffer(3)]],
                         device float* out [[buffer(4)]], constant int& K [[buffer(5)]],
                         uint tid [[thread_position_in_threadgroup]], uint bid [[threadgroup_position_in_grid]],
                         uint bdim [[threads_per_threadgroup]]) {
  PDL_WAIT(); PDL_LAUNCH();
  const int t = int(bid);
  const ulong id = (ulong)step[STEP_TOKENS + t];
  device const u32* row = w + id * (K >> 5);
  const ulong gb = id * (K >> 7);
  for (int k = int(tid); k < K; k += int(bdim)) {
    const float s = h2f(sc[gb + (k >> 7)]), b = h2f(bi[gb + (k >> 7)]);
    out[(ulong)t * K + k] = ((row[k >> 5] >> (k & 31)) & 1u) ? s + b : b;
  }
}
`,
};
