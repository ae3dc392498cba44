"""From a checkpoint to downstream scores: the exported Hugging Face folder loads offline in
transformers with our logits and our token ids, and lm-evaluation-harness scores it on a local task."""
import json
import os

import pytest
import torch

import prepare
import regmix
from data import open_domains
from export import hf_state_dict
from model import GPT, config_for

transformers = pytest.importorskip("transformers")  # requirements-dev.txt
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEOX = os.path.join(ROOT, "tests", "data", "gptneox", "tokenizer.json")
SMALL = ["--model", "tiny", "--steps", "4", "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "16",
         "--eval-seqs", "2", "--warmup", "1", "--device", "cpu"]
TEXT = "def add(a, b):\n    return a + b  # Ünïcödé ✓ 日本語, and spaces  \t\n"


def hf_logits(folder, idx):
    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    with torch.no_grad():
        return m(idx).logits


def our_logits(ckpt, idx):
    model = GPT.from_checkpoint(torch.load(ckpt, weights_only=True))
    with torch.no_grad():
        return model(idx)


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    """A target trained a few steps with --stage train, and two proxies with --proxy-ckpt."""
    out = str(tmp_path_factory.mktemp("out"))
    mix = os.path.join(out, "mix.json")
    json.dump({"alpha": 1, "beta": 1, "gamma": 1}, open(mix, "w"))
    regmix.main(["--stage", "train", "--data", corpus_dir, "--out", out, "--mixture", mix, *SMALL])
    regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", out, "--n-mixtures", "2", "--workers", "1",
                 "--proxy-ckpt", *SMALL])
    return out


def test_export_of_the_target_loads_offline_with_equal_logits_and_ids(trained, corpus_dir, enc4096):
    regmix.main(["--stage", "export", "--data", corpus_dir, "--out", trained])
    folder = os.path.join(trained, "target", "hf")
    assert sorted(os.listdir(folder)) == ["config.json", "generation_config.json", "model.safetensors",
                                          "tokenizer.json", "tokenizer_config.json"]
    idx = torch.randint(0, 4096, (2, 16), generator=torch.Generator().manual_seed(0))
    ours, theirs = our_logits(os.path.join(trained, "target", "ckpt.pt"), idx), hf_logits(folder, idx)
    assert ours.shape == theirs.shape == (2, 16, 4096)  # the padded vocabulary: 4096 is a multiple of 64
    assert (ours - theirs).abs().max() <= 1e-5
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tok.encode(TEXT, add_special_tokens=False) == enc4096.encode(TEXT).tolist()
    assert tok.eos_token_id == tok.bos_token_id == 4095 and tok.decode(enc4096.encode(TEXT)) == TEXT
    cfg = json.load(open(os.path.join(folder, "config.json")))
    assert cfg["num_key_value_heads"] == cfg["num_attention_heads"] and cfg["tie_word_embeddings"] is False


def test_export_of_a_proxy_checkpoint(trained, corpus_dir):
    ckpt = os.path.join(trained, "runs", "run_00001.pt")
    regmix.main(["--stage", "export", "--data", corpus_dir, "--out", trained, "--ckpt", ckpt])
    idx = torch.randint(0, 4096, (1, 16), generator=torch.Generator().manual_seed(1))
    diff = (our_logits(ckpt, idx) - hf_logits(os.path.join(trained, "runs", "run_00001_hf"), idx)).abs().max()
    assert diff <= 1e-5


@pytest.mark.parametrize("preset", ["1m", "60m"])
def test_paper_presets_export_exactly(preset, tmp_path):
    """The paper's sizes (the 1M proxy, the 60M model), with GPT-NeoX's tokenizer: its 50,277 ids
    pad to 50,304 in our model, and the exported tokenizer is the data's own tokenizer.json."""
    docs = [("web", f"page {i}: " + TEXT * 3, "") for i in range(20)]
    data = str(tmp_path / "data")
    meta = prepare.prepare(iter(docs), data, prepare.get_tokenizer(NEOX), progress=False)
    torch.manual_seed(0)
    model = GPT(config_for(preset, meta["tokenizer"]["vocab_size"], block_size=64))
    torch.save(model.checkpoint(), tmp_path / "ckpt.pt")
    regmix.main(["--stage", "export", "--data", data, "--out", str(tmp_path), "--ckpt", str(tmp_path / "ckpt.pt"),
                 "--hf-out", str(tmp_path / "hf")])
    idx = torch.randint(0, 50277, (1, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(idx)
    theirs = hf_logits(str(tmp_path / "hf"), idx)
    assert ours.shape[-1] == 50304 and (ours - theirs).abs().max() <= 1e-5
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    enc = prepare.get_tokenizer(NEOX)
    assert tok.encode(TEXT, add_special_tokens=False) == enc.encode(TEXT).tolist() and tok.eos_token_id == 0


def test_1b_names_and_shapes_match_transformers_llama(tmp_path):
    """The 1B preset without its 4 GB of weights: every exported tensor has the name and shape that
    transformers' LlamaForCausalLM expects from the exported config, and nothing is missing."""
    with torch.device("meta"):
        model = GPT(config_for("1b", 50277))
    ours = {k: tuple(v.shape) for k, v in hf_state_dict(model.checkpoint()["config"], model.state_dict()).items()}
    cfg = model.checkpoint()["config"]  # the fields export.py writes into config.json
    hf_cfg = transformers.LlamaConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["n_embd"],
                                      intermediate_size=cfg["mlp_hidden"], num_hidden_layers=cfg["n_layer"],
                                      num_attention_heads=cfg["n_head"], num_key_value_heads=cfg["n_head"],
                                      tie_word_embeddings=False)
    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in transformers.LlamaForCausalLM(hf_cfg).state_dict().items()}
    assert ours == theirs


def test_lm_eval_scores_the_exported_model_offline_on_a_local_task(trained, corpus_dir, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.chdir(ROOT)  # the task's data file is relative to the repository
    regmix.main(["--stage", "eval", "--data", corpus_dir, "--out", trained, "--tasks", "tiny_mc",
                 "--include-path", os.path.join(ROOT, "tests", "data", "tiny_mc"), "--num-fewshot", "0", "2",
                 "--device", "cpu", "--eval-batch-size", "4"])
    res = json.load(open(os.path.join(trained, "target", "eval_downstream.json")))
    scores = res["scores"]["tiny_mc"]
    assert set(scores) == {"0", "2", "mean"} and res["tasks"] == ["tiny_mc"]
    for shots in ("0", "2"):
        assert 0 <= scores[shots]["acc,none"] <= 1 and 0 <= scores[shots]["acc_norm,none"] <= 1
    assert scores["mean"]["acc,none"] == pytest.approx((scores["0"]["acc,none"] + scores["2"]["acc,none"]) / 2)
    assert open_domains(corpus_dir)  # the data folder is untouched by evaluation
