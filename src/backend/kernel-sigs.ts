// Every GPU kernel's argument list, defined once for both dialects (cuda/ and metal/ kernels take
// the same parameters in the same order): p = device pointer, i = int32, f = float32.
// Each backend checks its arguments against this before a launch; test/metal-twins.test.ts checks
// that the MSL and CUDA sources declare exactly these.

export const KERNEL_SIGS: Readonly<Record<string, string>> = {
  qmv_q1_f32: "pppppii",
  qmv_q1_f32_legacy: "pppppii",
  qmm_x_split_f32: "ppppiiii",
  qmm_q1_f32: "pppppppiiiii",
  embed_q1_f32: "pppppi",
  rmsnorm_f32: "pppifi",
  add_rmsnorm_f32: "ppppifi",
  swiglu_f32: "pppi",
  swiglu_rows_f32: "ppii",
  add_f32: "pppi",
  copy2d_f32: "ppiiii",
  qk_norm_rope_append_f32: "pppppppppiiiff",
  attention_partial_f32: "pppppiiiii",
  attention_combine_f32: "pppiiii",
  attention_combine_long_f32: "pppiiii",
  attention_prefill_f32: "pppppiiii",
  argmax_f32: "pip",
  sample_topk_topp_f32: "piifffp",
};

/** Kernels with no Metal twin by design, and why (test/metal-twins.test.ts lists them). */
export const CUDA_ONLY: Readonly<Record<string, { sig: string; why: string }>> = {
  qmv_q1_bmma: { sig: "pppppiii", why: "binary tensor cores (mma .b1 AND+POPC) and mbarrier-tracked async copies: Apple GPUs have no binary matrix unit" },
  qmv_x16_prep: { sig: "ppi", why: "the 16-bit plane quantization of x that only qmv_q1_bmma consumes" },
  rmsnorm_x16_f32: { sig: "ppppif", why: "rmsnorm with qmv_q1_bmma's x quantization fused in (for the bmma matvec only)" },
  add_rmsnorm_x16_f32: { sig: "pppppif", why: "add_rmsnorm with qmv_q1_bmma's x quantization fused in (for the bmma matvec only)" },
  swiglu_x16_f32: { sig: "ppppi", why: "swiglu with qmv_q1_bmma's x quantization fused in (for the bmma matvec only)" },
  attention_combine_x16_f32: { sig: "pppiiip", why: "attention_combine_f32 with qmv_q1_bmma's x quantization fused in (for the bmma matvec only)" },
};
