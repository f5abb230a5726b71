#!/usr/bin/env python3
"""Tiny random-weight Qwen3-MoE folder (2 layers, 4 experts, top-2, hidden 256, moe_intermediate 256),
per-expert tensors `model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight`, bf16, the SmolLM2 tokenizer.
Usage: moemake.py TOKENIZER_DIR OUT_DIR"""
import json, os, shutil, sys
import torch
from safetensors.torch import save_file

tokdir, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
torch.manual_seed(0)
V, H, I, L, E, HD, NH, NKV = 49152, 256, 256, 2, 4, 64, 4, 2
cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": V, "hidden_size": H,
       "intermediate_size": 512, "moe_intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH,
       "num_key_value_heads": NKV, "head_dim": HD, "num_experts": E, "num_experts_per_tok": 2,
       "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True, "max_position_embeddings": 2048,
       "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu",
       "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 0, "attention_bias": False,
       "output_router_logits": False, "router_aux_loss_coef": 0.001}
r = lambda *s: (torch.randn(*s) * 0.02).to(torch.bfloat16)
one = lambda n: torch.ones(n, dtype=torch.bfloat16)
sd = {"model.embed_tokens.weight": r(V, H), "model.norm.weight": one(H), "lm_head.weight": r(V, H)}
for l in range(L):
    p = f"model.layers.{l}."
    sd[p + "input_layernorm.weight"] = one(H); sd[p + "post_attention_layernorm.weight"] = one(H)
    sd[p + "self_attn.q_proj.weight"] = r(NH * HD, H); sd[p + "self_attn.k_proj.weight"] = r(NKV * HD, H)
    sd[p + "self_attn.v_proj.weight"] = r(NKV * HD, H); sd[p + "self_attn.o_proj.weight"] = r(H, NH * HD)
    sd[p + "self_attn.q_norm.weight"] = one(HD); sd[p + "self_attn.k_norm.weight"] = one(HD)
    sd[p + "mlp.gate.weight"] = r(E, H)
    for e in range(E):
        q = p + f"mlp.experts.{e}."
        sd[q + "gate_proj.weight"] = r(I, H); sd[q + "up_proj.weight"] = r(I, H); sd[q + "down_proj.weight"] = r(H, I)
save_file(sd, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    shutil.copy(os.path.join(tokdir, f), os.path.join(dst, f))
print(json.dumps({"tensors": len(sd)}))
