// embed_q1_f32: out[t, :] = dequantized row tokens[t] of a packed 1-bit table [V, K].
// f32 output, f16 scales/biases. Token ids come from the step buffer (step[4 + t]).
//
// Thread -> data mapping: one block per token t; thread i writes columns i, i + blockDim, ...
// out = bit ? s + b : b with the scale/bias of the column's 128-group.

import { COMMON, type KernelFile } from "./common.ts";

export const embed_q1_f32: KernelFile = {
  file: "embed_q1_f32",
  kernels: ["embed_q1_f32"],
  source: COMMON + /* cuda */ `
extern "C" __global__ void embed_q1_f32(const u32* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
                                        const int* __restrict__ step, float* __restrict__ out, int K) {
  PDL_WAIT(); PDL_LAUNCH();
  const int t = blockIdx.x;
  const size_t id = (size_t)step[STEP_TOKENS + t];
  const u32* row = w + id * (K >> 5);
  const size_t gb = id * (K >> 7);
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    const float s = h2f(sc[gb + (k >> 7)]), b = h2f(bi[gb + (k >> 7)]);
    out[(size_t)t * K + k] = ((row[k >> 5] >> (k & 31)) & 1u) ? s + b : b;
  }
}
`,
};
