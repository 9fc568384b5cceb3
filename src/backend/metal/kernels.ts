// The Metal kernels the backend loads: every metal/*.ts file, compiled one library per file (each
// carries its own copy of the COMMON prelude), with each kernel's argument signature.

import type { KernelFile } from "../../../metal/common.ts";
import { qmv_q1_f32 } from "../../../metal/qmv_q1_f32.ts";
import { qmv_q1_f32_legacy } from "../../../metal/qmv_q1_f32_legacy.ts";
import { qmm_q1_f32 } from "../../../metal/qmm_q1_f32.ts";
import { embed_q1_f32 } from "../../../metal/embed_q1_f32.ts";
import { rmsnorm_f32 } from "../../../metal/rmsnorm_f32.ts";
import { elementwise_f32 } from "../../../metal/elementwise_f32.ts";
import { qk_norm_rope_append_f32 } from "../../../metal/qk_norm_rope_append_f32.ts";
import { attention_f32 } from "../../../metal/attention_f32.ts";
import { attention_prefill_f32 } from "../../../metal/attention_prefill_f32.ts";
import { sample_f32 } from "../../../metal/sample_f32.ts";
import type { MetalDevice } from "./device.ts";
import { KERNEL_SIGS } from "../kernel-sigs.ts";

export const FILES: KernelFile[] = [
  qmv_q1_f32, qmv_q1_f32_legacy, qmm_q1_f32, embed_q1_f32, rmsnorm_f32, elementwise_f32,
  qk_norm_rope_append_f32, attention_f32, attention_prefill_f32, sample_f32,
];

/**
 * Kernel name -> argument kinds, one letter per [[buffer(i)]]: p = buffer, i = int32, f = float32.
 * CUDA parameter i = Metal buffer i; test/metal-twins.test.ts checks these against both dialects.
 */
export const SIGS: Readonly<Record<string, string>> = KERNEL_SIGS;

/** Compiles every kernel file into `dev` and checks the simdgroup width the kernels assume. */
export function loadKernels(dev: MetalDevice): void {
  for (const kf of FILES) {
    for (const k of kf.kernels) if (!SIGS[k]) throw new Error(`metal backend: no argument signature for kernel ${k}`);
    dev.compile(kf.source, kf.kernels, `metal/${kf.file}.ts`);
    for (const k of kf.kernels) {
      const p = dev.pipeline(k);
      // warp_sum and every lane/row mapping assume 32-wide simdgroups (true on all Apple GPUs)
      if (p.simdWidth !== 32) throw new Error(`metal: ${k} runs ${p.simdWidth}-wide simdgroups; the kernels need 32`);
    }
  }
}
