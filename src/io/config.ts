// config.json -> ModelConfig, keeping only the keys we use and checking each one.

export interface RopeScaling {
  type: "yarn";
  factor: number;
  originalMaxPositionEmbeddings: number | null; // null: max_position_embeddings is the original length
  betaFast: number;
  betaSlow: number;
  attentionFactor?: number; // explicit override; else 0.1 ln(factor) + 1
  truncate: boolean; // transformers' `truncate` (default true): floor/ceil the correction dims
}

export interface ModelConfig {
  modelType: "qwen3";
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bits: 1;
  groupSize: 128;
  eosTokenIds: number[];
}

export class ConfigError extends Error {}

type Json = Record<string, unknown>;

function num(c: Json, key: string, file: string, opts: { int?: boolean; min?: number; def?: number } = {}): number {
  const v = c[key] ?? opts.def;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new ConfigError(`${file}: field "${key}" must be a number, got ${JSON.stringify(c[key])}`);
  if (opts.int && !Number.isInteger(v)) throw new ConfigError(`${file}: field "${key}" must be an integer, got ${v}`);
  if (opts.min !== undefined && v < opts.min) throw new ConfigError(`${file}: field "${key}" must be >= ${opts.min}, got ${v}`);
  return v;
}

const SUPPORTED = ["qwen3"];

export function parseConfig(raw: unknown, file = "config.json"): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(`${file}: expected a JSON object`);
  const c = raw as Json;
  const modelType = c.model_type;
  if (typeof modelType !== "string" || !SUPPORTED.includes(modelType)) {
    throw new ConfigError(`${file}: unsupported model_type ${JSON.stringify(modelType)}; supported: ${SUPPORTED.join(", ")}`);
  }
  const q = (c.quantization ?? c.quantization_config) as Json | undefined;
  if (!q || typeof q !== "object") throw new ConfigError(`${file}: no "quantization" field; bunsai loads 1-bit MLX checkpoints ({"bits": 1, "group_size": 128})`);
  if (q.bits !== 1) throw new ConfigError(`${file}: quantization.bits must be 1, got ${JSON.stringify(q.bits)}`);
  if (q.group_size !== 128) throw new ConfigError(`${file}: quantization.group_size must be 128, got ${JSON.stringify(q.group_size)}`);

  const hiddenSize = num(c, "hidden_size", file, { int: true, min: 1 });
  const numHeads = num(c, "num_attention_heads", file, { int: true, min: 1 });
  const numKvHeads = num(c, "num_key_value_heads", file, { int: true, min: 1, def: numHeads });
  const headDim = num(c, "head_dim", file, { int: true, min: 1, def: hiddenSize / numHeads });
  const intermediateSize = num(c, "intermediate_size", file, { int: true, min: 1 });
  if (numHeads % numKvHeads !== 0) throw new ConfigError(`${file}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  if (![64, 128, 256].includes(headDim)) throw new ConfigError(`${file}: head_dim must be 64, 128 or 256, got ${headDim}`);
  for (const [k, v] of [["hidden_size", hiddenSize], ["intermediate_size", intermediateSize], ["num_attention_heads * head_dim", numHeads * headDim]] as const) {
    if (v % 128 !== 0) throw new ConfigError(`${file}: ${k} = ${v} is not a multiple of the 1-bit group size 128`);
  }

  const ropeTheta = num(c, "rope_theta", file, { min: 1, def: 10000 });
  const maxPos = num(c, "max_position_embeddings", file, { int: true, min: 1, def: 40960 });
  let ropeScaling: RopeScaling | null = null;
  const rs = c.rope_scaling as Json | null | undefined;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== "object") throw new ConfigError(`${file}: rope_scaling must be an object or null`);
    const type = rs.rope_type ?? rs.type;
    if (type === "default") ropeScaling = null;
    else if (type === "yarn") {
      const factor = num(rs, "factor", `${file} rope_scaling`, { min: 1 });
      ropeScaling = {
        type: "yarn",
        factor,
        originalMaxPositionEmbeddings: rs.original_max_position_embeddings == null ? null
          : num(rs, "original_max_position_embeddings", `${file} rope_scaling`, { int: true, min: 1 }),
        betaFast: num(rs, "beta_fast", `${file} rope_scaling`, { def: 32 }),
        betaSlow: num(rs, "beta_slow", `${file} rope_scaling`, { def: 1 }),
        attentionFactor: rs.attention_factor == null ? undefined : num(rs, "attention_factor", `${file} rope_scaling`),
        truncate: rs.truncate === undefined ? true : Boolean(rs.truncate),
      };
      if (rs.mscale != null || rs.mscale_all_dim != null) {
        throw new ConfigError(`${file}: rope_scaling.mscale / mscale_all_dim are not supported`);
      }
    } else throw new ConfigError(`${file}: rope_scaling type ${JSON.stringify(type)} is not supported (none, "default" or "yarn")`);
  }

  const eos = c.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? eos.filter((x): x is number => Number.isInteger(x)) : Number.isInteger(eos) ? [eos as number] : [];

  return {
    modelType: "qwen3",
    hiddenSize, numLayers: num(c, "num_hidden_layers", file, { int: true, min: 1 }), numHeads, numKvHeads, headDim,
    intermediateSize, vocabSize: num(c, "vocab_size", file, { int: true, min: 1 }),
    rmsNormEps: num(c, "rms_norm_eps", file, { min: 0, def: 1e-6 }),
    ropeTheta, ropeScaling, maxPositionEmbeddings: maxPos,
    tieWordEmbeddings: c.tie_word_embeddings === undefined ? false : Boolean(c.tie_word_embeddings),
    bits: 1, groupSize: 128, eosTokenIds,
  };
}
