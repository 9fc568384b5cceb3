// Checkpoint loading: the real on-disk layout, shards, bf16 scales, and one clear error per bad input.
import { beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { SafetensorsFile, writeSafetensors, type DType } from "../src/io/safetensors.ts";
import { parseConfig } from "../src/io/config.ts";
import { CpuBackend } from "../src/backend/cpu/index.ts";
import { Qwen3 } from "../src/model/qwen3.ts";
import { PRESETS } from "../src/model/make.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../src/quant/f16.ts";
import { testModel } from "./helpers.ts";

let base = "";
const work = mkdtempSync(join(tmpdir(), "bunsai-loader-"));
beforeAll(async () => { base = await testModel("tiny-seed0", PRESETS.tiny!, 0); });

/** A copy of the tiny model whose safetensors bytes or config are altered. */
function variant(name: string, edit: { bytes?: (b: Uint8Array) => Uint8Array; config?: (c: Record<string, unknown>) => void }): string {
  const dir = join(work, name);
  rmSync(dir, { recursive: true, force: true });
  cpSync(base, dir, { recursive: true });
  if (edit.bytes) writeFileSync(join(dir, "model.safetensors"), edit.bytes(new Uint8Array(readFileSync(join(dir, "model.safetensors")))));
  if (edit.config) {
    const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    edit.config(c);
    writeFileSync(join(dir, "config.json"), JSON.stringify(c));
  }
  return dir;
}

/** Rewrites the JSON header of a safetensors file (keeping the data). */
function withHeader(edit: (h: Record<string, any>) => void) {
  return (b: Uint8Array) => {
    const n = Number(new DataView(b.buffer).getBigUint64(0, true));
    const h = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n)));
    edit(h);
    let json = JSON.stringify(h);
    json += " ".repeat(Math.max(0, n - json.length)); // keep the data where it was when possible
    const enc = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + enc.length + b.length - 8 - n);
    new DataView(out.buffer).setBigUint64(0, BigInt(enc.length), true);
    out.set(enc, 8);
    out.set(b.subarray(8 + n), 8 + enc.length);
    return out;
  };
}

describe("loading", () => {
  test("the tiny model loads with every tensor checked", () => {
    const ck = loadCheckpoint(base);
    expect(ck.config.hiddenSize).toBe(256);
    expect(ck.weights.layers.length).toBe(2);
    expect(ck.weights.lmHead).toBe(ck.weights.embed); // tied
  });

  test("tensors are views into the memory map, not copies", () => {
    const f = SafetensorsFile.open(join(base, "model.safetensors"));
    const a = f.raw("model.embed_tokens.weight"), b = f.raw("model.embed_tokens.weight");
    expect(a.buffer).toBe(f.bytes.buffer);
    expect(a.byteOffset).toBe(b.byteOffset);
  });

  test("a sharded checkpoint (index.json + 2 shards) gives the same logits", async () => {
    const dir = join(work, "sharded");
    rmSync(dir, { recursive: true, force: true });
    cpSync(base, dir, { recursive: true });
    rmSync(join(dir, "model.safetensors"));
    const f = SafetensorsFile.open(join(base, "model.safetensors"));
    const names = [...f.tensors.keys()];
    const shards = [names.slice(0, 20), names.slice(20)];
    const map: Record<string, string> = {};
    for (let i = 0; i < 2; i++) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(join(dir, file), shards[i]!.map((n) => {
        const t = f.tensors.get(n)!;
        return { name: n, dtype: t.dtype, shape: t.shape, data: f.raw(n) };
      }));
      for (const n of shards[i]!) map[n] = file;
    }
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: map }));
    const run = async (d: string) => {
      const ck = loadCheckpoint(d);
      const m = new Qwen3(ck.config, new CpuBackend(), ck);
      return m.forward(m.newSession(8), [1, 2, 3]);
    };
    expect(await run(dir)).toEqual(await run(base));
  });

  test("bf16 scales and biases load (converted exactly to f16)", async () => {
    const dir = join(work, "bf16");
    rmSync(dir, { recursive: true, force: true });
    cpSync(base, dir, { recursive: true });
    const f = SafetensorsFile.open(join(base, "model.safetensors"));
    const tensors = [...f.tensors.values()].map((t) => {
      let data: ArrayBufferView = f.raw(t.name), dtype: DType = t.dtype;
      if (t.name.endsWith(".scales") || t.name.endsWith(".biases")) {
        const h = new Uint16Array(f.raw(t.name).slice().buffer);
        data = Uint16Array.from(h, (b) => f32ToBf16Bits(f16BitsToF32(b)));
        dtype = "BF16";
      }
      return { name: t.name, dtype, shape: t.shape, data };
    });
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    const a = loadCheckpoint(dir).weights.layers[0]!.q, b = loadCheckpoint(base).weights.layers[0]!.q;
    // what was written is the f16 value rounded to bf16; loading must give exactly that, as f16
    const viaBf16 = (h: Uint16Array) => Uint16Array.from(h, (x) => f32ToF16Bits(bf16BitsToF32(f32ToBf16Bits(f16BitsToF32(x)))));
    expect(a.scales).toEqual(viaBf16(b.scales));
    expect(a.biases).toEqual(viaBf16(b.biases));
    expect(a.scales).not.toEqual(b.scales); // the test data really went through bf16
  });
});

describe("bad input gets one clear error naming the file, tensor or field", () => {
  const cases: [string, () => string, RegExp][] = [
    ["missing directory", () => join(work, "nope"), /model directory not found/],
    ["missing config.json", () => { const d = variant("noconfig", {}); rmSync(join(d, "config.json")); return d; }, /config\.json: file not found/],
    ["missing weights", () => { const d = variant("noweights", {}); rmSync(join(d, "model.safetensors")); return d; }, /no model\.safetensors or model\.safetensors\.index\.json/],
    ["truncated safetensors", () => variant("trunc", { bytes: (b) => b.subarray(0, b.length - 1000) }), /model\.safetensors: tensor ".*" ends at byte \d+ but the file has \d+ bytes \(truncated file\?\)/],
    ["absurd header length", () => variant("hdr", { bytes: (b) => { const c = b.slice(); new DataView(c.buffer).setBigUint64(0, 1n << 60n, true); return c; } }), /header length \d+ is absurd/],
    ["file shorter than 8 bytes", () => variant("tiny", { bytes: () => new Uint8Array(3) }), /too small for a safetensors header/],
    ["header that is not JSON", () => variant("notjson", { bytes: (b) => { const c = b.slice(); c[8] = 0x7b; c[9] = 0x7b; return c; } }), /header is not valid JSON/],
    ["offsets past the end", () => variant("past", { bytes: withHeader((h) => { h["model.norm.weight"].data_offsets = [1e9, 1e9 + 512]; }) }), /tensor "model\.norm\.weight" ends at byte/],
    ["overlapping tensors", () => variant("overlap", { bytes: withHeader((h) => { h["model.norm.weight"].data_offsets = h["model.layers.0.input_layernorm.weight"].data_offsets; }) }), /overlap/],
    ["size that does not match dtype x shape", () => variant("size", { bytes: withHeader((h) => { h["model.norm.weight"].shape = [255]; }) }), /tensor "model\.norm\.weight": 512 bytes for F16 \[255\], which needs 510/],
    ["wrong dtype for a named tensor", () => variant("dtype", { bytes: withHeader((h) => { h["model.layers.0.self_attn.q_proj.weight"].dtype = "F32"; }) }), /tensor "model\.layers\.0\.self_attn\.q_proj\.weight" has dtype F32, expected U32/],
    ["wrong shape for a named tensor", () => variant("shape", { bytes: withHeader((h) => { const t = h["model.layers.1.mlp.up_proj.scales"]; t.shape = [t.shape[1], t.shape[0]]; }) }), /tensor "model\.layers\.1\.mlp\.up_proj\.scales" has shape \[2,768\], expected \[768,2\]/],
    ["a missing tensor", () => variant("missing", { bytes: withHeader((h) => { h["model.layers.1.mlp.extra"] = h["model.layers.1.mlp.down_proj.biases"]; delete h["model.layers.1.mlp.down_proj.biases"]; }) }), /tensor "model\.layers\.1\.mlp\.down_proj\.biases" is missing/],
    ["bits != 1", () => variant("bits", { config: (c) => { (c.quantization as any).bits = 4; } }), /quantization\.bits must be 1, got 4/],
    ["group_size != 128", () => variant("gs", { config: (c) => { (c.quantization as any).group_size = 64; } }), /quantization\.group_size must be 128, got 64/],
    ["unknown model_type", () => variant("mt", { config: (c) => { c.model_type = "llama"; } }), /unsupported model_type "llama"/],
    ["head_dim outside 64/128/256", () => variant("hd", { config: (c) => { c.head_dim = 96; } }), /head_dim must be 64, 128 or 256, got 96/],
    ["unsupported rope_scaling", () => variant("rope", { config: (c) => { c.rope_scaling = { rope_type: "llama3", factor: 8 }; } }), /rope_scaling type "llama3" is not supported/],
    ["a config field of the wrong type", () => variant("type", { config: (c) => { c.hidden_size = "256"; } }), /field "hidden_size" must be a number, got "256"/],
  ];
  for (const [name, make, re] of cases) {
    test(name, () => {
      const dir = make();
      expect(() => loadCheckpoint(dir)).toThrow(re);
    });
  }

  test("a prompt longer than the context", async () => {
    const ck = loadCheckpoint(base);
    const m = new Qwen3(ck.config, new CpuBackend(), ck);
    await expect(m.forward(m.newSession(4), [1, 2, 3, 4, 5])).rejects.toThrow(/context full: 0 tokens held \+ 5 new > context size 4/);
  });

  test("token ids outside the vocabulary", async () => {
    const ck = loadCheckpoint(base);
    const m = new Qwen3(ck.config, new CpuBackend(), ck);
    await expect(m.forward(m.newSession(4), [151669])).rejects.toThrow(/token id 151669 at index 0 is outside the vocabulary/);
  });

  test("config: YaRN with an original length, and rope_type 'default' is none", () => {
    const base = { model_type: "qwen3", quantization: { bits: 1, group_size: 128 }, hidden_size: 256, num_attention_heads: 4, num_hidden_layers: 1, intermediate_size: 256, vocab_size: 10 };
    expect(parseConfig({ ...base, rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 16384 } }).ropeScaling?.factor).toBe(4);
    expect(parseConfig({ ...base, rope_scaling: { rope_type: "default" } }).ropeScaling).toBeNull();
    expect(parseConfig({ ...base, head_dim: 128 }).headDim).toBe(128);
  });
});
