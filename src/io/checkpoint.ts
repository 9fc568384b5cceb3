// A model directory -> config + named weights, every tensor checked by name, dtype and shape.
//
//   DIR/config.json
//   DIR/model.safetensors                      or  DIR/model-*.safetensors + model.safetensors.index.json
//   DIR/tokenizer.json, DIR/tokenizer_config.json

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseConfig, type ModelConfig } from "./config.ts";
import { SafetensorsFile, viewAs, type TensorInfo } from "./safetensors.ts";
import { bf16ToF16Bits, bf16ArrayToF32, f16ArrayToF32 } from "../quant/f16.ts";
import type { Q1Host } from "../quant/q1.ts";

export class CheckpointError extends Error {}

export interface LayerWeights {
  inputNorm: Float32Array; // [hidden]
  postNorm: Float32Array; // [hidden]
  qNorm: Float32Array; // [headDim]
  kNorm: Float32Array; // [headDim]
  q: Q1Host; // [nHeads*headDim, hidden]
  k: Q1Host; // [nKv*headDim, hidden]
  v: Q1Host; // [nKv*headDim, hidden]
  o: Q1Host; // [hidden, nHeads*headDim]
  gate: Q1Host; // [intermediate, hidden]
  up: Q1Host; // [intermediate, hidden]
  down: Q1Host; // [hidden, intermediate]
}

export interface ModelWeights {
  embed: Q1Host; // [vocab, hidden]
  lmHead: Q1Host; // [vocab, hidden]; the embedding itself when tied
  norm: Float32Array; // [hidden]
  layers: LayerWeights[];
}

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  weights: ModelWeights;
  files: SafetensorsFile[];
  bytes: number; // weight bytes on disk
}

function readJson(path: string): unknown {
  if (!existsSync(path)) throw new CheckpointError(`${path}: file not found`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new CheckpointError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

export function loadConfig(dir: string): ModelConfig {
  const path = join(dir, "config.json");
  const cfg = parseConfig(readJson(path), path);
  // generation_config.json may list more EOS ids
  const gen = join(dir, "generation_config.json");
  if (existsSync(gen)) {
    const g = readJson(gen) as { eos_token_id?: unknown };
    const ids = Array.isArray(g.eos_token_id) ? g.eos_token_id : [g.eos_token_id];
    for (const id of ids) if (Number.isInteger(id) && !cfg.eosTokenIds.includes(id as number)) cfg.eosTokenIds.push(id as number);
  }
  return cfg;
}

function openShards(dir: string): SafetensorsFile[] {
  const single = join(dir, "model.safetensors");
  if (existsSync(single)) return [SafetensorsFile.open(single)];
  const indexPath = join(dir, "model.safetensors.index.json");
  if (!existsSync(indexPath)) throw new CheckpointError(`${dir}: no model.safetensors or model.safetensors.index.json`);
  const index = readJson(indexPath) as { weight_map?: Record<string, string> };
  if (!index.weight_map || typeof index.weight_map !== "object") throw new CheckpointError(`${indexPath}: no "weight_map" object`);
  const names = [...new Set(Object.values(index.weight_map))];
  return names.map((n) => {
    if (typeof n !== "string" || n.includes("/") || n.includes("..")) throw new CheckpointError(`${indexPath}: bad shard name ${JSON.stringify(n)}`);
    return SafetensorsFile.open(join(dir, n));
  });
}

export function loadCheckpoint(dir: string): Checkpoint {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: model directory not found`);
  const config = loadConfig(dir);
  const files = openShards(dir);
  const where = new Map<string, { f: SafetensorsFile; t: TensorInfo }>();
  for (const f of files) for (const t of f.tensors.values()) where.set(t.name, { f, t });

  const find = (name: string) => {
    const e = where.get(name);
    if (!e) throw new CheckpointError(`${dir}: tensor "${name}" is missing`);
    return e;
  };
  const expect = (name: string, dtypes: string[], shape: number[]) => {
    const e = find(name);
    if (!dtypes.includes(e.t.dtype)) throw new CheckpointError(`${e.t.file}: tensor "${name}" has dtype ${e.t.dtype}, expected ${dtypes.join(" or ")}`);
    if (e.t.shape.length !== shape.length || e.t.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`${e.t.file}: tensor "${name}" has shape [${e.t.shape}], expected [${shape}]`);
    }
    return e;
  };
  const half = (name: string, shape: number[]): Uint16Array => {
    const e = expect(name, ["F16", "BF16"], shape);
    const bits = viewAs(e.f.raw(name), Uint16Array);
    return e.t.dtype === "BF16" ? bf16ToF16Bits(bits) : bits;
  };
  const vec = (name: string, n: number): Float32Array => {
    const e = expect(name, ["F16", "BF16", "F32"], [n]);
    const raw = e.f.raw(name);
    if (e.t.dtype === "F32") return Float32Array.from(viewAs(raw, Float32Array));
    const bits = viewAs(raw, Uint16Array);
    return e.t.dtype === "BF16" ? bf16ArrayToF32(bits) : f16ArrayToF32(bits);
  };
  const q1 = (prefix: string, rows: number, cols: number): Q1Host => {
    const we = expect(`${prefix}.weight`, ["U32"], [rows, cols / 32]);
    return {
      rows, cols,
      words: viewAs(we.f.raw(`${prefix}.weight`), Uint32Array),
      scales: half(`${prefix}.scales`, [rows, cols / 128]),
      biases: half(`${prefix}.biases`, [rows, cols / 128]),
    };
  };

  const { hiddenSize: H, numHeads, numKvHeads, headDim: D, intermediateSize: I, vocabSize: V } = config;
  const embed = q1("model.embed_tokens", V, H);
  const lmHead = config.tieWordEmbeddings ? embed : q1("lm_head", V, H);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    layers.push({
      inputNorm: vec(`${p}.input_layernorm.weight`, H),
      postNorm: vec(`${p}.post_attention_layernorm.weight`, H),
      qNorm: vec(`${p}.self_attn.q_norm.weight`, D),
      kNorm: vec(`${p}.self_attn.k_norm.weight`, D),
      q: q1(`${p}.self_attn.q_proj`, numHeads * D, H),
      k: q1(`${p}.self_attn.k_proj`, numKvHeads * D, H),
      v: q1(`${p}.self_attn.v_proj`, numKvHeads * D, H),
      o: q1(`${p}.self_attn.o_proj`, H, numHeads * D),
      gate: q1(`${p}.mlp.gate_proj`, I, H),
      up: q1(`${p}.mlp.up_proj`, I, H),
      down: q1(`${p}.mlp.down_proj`, H, I),
    });
  }
  const norm = vec("model.norm.weight", H);
  const bytes = files.reduce((a, f) => a + f.bytes.byteLength, 0);
  return { dir, config, weights: { embed, lmHead, norm, layers }, files, bytes };
}
