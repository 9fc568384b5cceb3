"""Reference logits from Hugging Face transformers for bunsai's generated checkpoints.

usage: python3 transformers_logits.py MODELS_DIR OUT_DIR

For each MODELS_DIR/<name> (made by make-models.ts) it dequantizes every 1-bit tensor to float32
(w = scale * bit + bias), runs transformers' Qwen3ForCausalLM in float32 on the CPU over the prompt,
and writes OUT_DIR/<name>.json: transformers' rope tables, and per position the top-16 logits plus
every 307th column, and a greedy continuation with its top-2 margins.
"""
import json, os, sys
import numpy as np
import torch
from safetensors.numpy import load_file
import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM

STRIDE = 307
COLS = list(range(0, 151669, STRIDE))


def dequant(t, prefix):
    words = t[prefix + ".weight"].astype(np.uint32)
    rows = words.shape[0]
    bits = ((words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1).reshape(rows, -1).astype(np.float32)
    s = np.repeat(t[prefix + ".scales"].astype(np.float32), 128, axis=1)
    b = np.repeat(t[prefix + ".biases"].astype(np.float32), 128, axis=1)
    return s * bits + b


def run(model_dir, out_path):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    for k in ("quantization", "quantization_config", "bunsai_note"):
        cfg.pop(k, None)
    config = Qwen3Config(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    t = load_file(os.path.join(model_dir, "model.safetensors"))
    sd = {}
    for name in t:
        if name.endswith(".weight") and t[name].dtype == np.uint32:
            p = name[: -len(".weight")]
            sd[p + ".weight"] = torch.from_numpy(dequant(t, p))
        elif name.endswith((".scales", ".biases")):
            continue
        else:
            sd[name] = torch.from_numpy(t[name].astype(np.float32))
    if cfg.get("tie_word_embeddings"):
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary_emb" not in m]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.get("tie_word_embeddings"):
        model.tie_weights()
    prompt = json.load(open(os.path.join(model_dir, "prompt.json")))
    with torch.no_grad():
        ids = torch.tensor([prompt])
        logits = model(ids).logits[0].float().numpy()
        greedy, margins, cur = [], [], list(prompt)
        for _ in range(8):
            l = model(torch.tensor([cur])).logits[0, -1].float().numpy()
            o = np.argsort(-l)
            greedy.append(int(o[0])); margins.append(float(l[o[0]] - l[o[1]]))
            cur.append(int(o[0]))
    rot = model.model.rotary_emb
    positions = []
    for p in range(len(prompt)):
        top = np.argsort(-logits[p])[:16]
        positions.append({"top": [[int(i), round(float(logits[p, i]), 5)] for i in top],
                          "cols": [round(float(logits[p, c]), 5) for c in COLS]})
    json.dump({
        "source": f"transformers {transformers.__version__}, torch {torch.__version__}, float32 CPU, eager attention",
        "model": os.path.basename(model_dir), "input_ids": prompt, "col_stride": STRIDE,
        "inv_freq": [float(x) for x in rot.inv_freq.float().numpy()],
        "attention_scaling": float(rot.attention_scaling),
        "positions": positions, "greedy": greedy, "greedy_margins": margins,
    }, open(out_path, "w"))
    print("wrote", out_path, "max |logit|", float(np.abs(logits).max()))


if __name__ == "__main__":
    models, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(models)):
        run(os.path.join(models, name), os.path.join(out, name + ".json"))
