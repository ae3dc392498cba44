"""
The model sizes RegMix trains, each with the recipe it trains by: the one place a fork adds a size.

    python model.py      # parameter counts and FLOPs per token of every preset

A preset is a model shape (model.py builds it) and a recipe: the paper's numbers, or `cpu`, sized so
that the embedded demo's whole loop runs in minutes on a 2-core CPU. The recipe gives every stage
its defaults: how many mixtures a sweep trains (mixtures.py), and the steps, batch, block and
learning rates of a proxy run and of a target run (train.py). Flags override any of them.
"""

RECIPES = {
    "paper": dict(
        n_mixtures=512,  # the paper's sweep
        # the 1M proxies (sail-sg/regmix, mixture_config/synthesize_mixture.py): constant 4e-4 after warmup
        proxy=dict(steps=1000, batch_size=512, block_size=2048, micro_batch_size=16, warmup=100,
                   lr=4e-4, min_lr=4e-4, eval_seqs=64),
        # the 1B target: cosine from 4e-4 to 1e-5, 25,000 steps x 512 x 2048 = 25B tokens
        train=dict(steps=25000, batch_size=512, block_size=2048, micro_batch_size=16, warmup=1000,
                   lr=4e-4, min_lr=1e-5, eval_seqs=64)),
    "cpu": dict(
        n_mixtures=64,
        proxy=dict(steps=20, batch_size=16, block_size=128, micro_batch_size=16, warmup=5,
                   lr=2e-3, min_lr=2e-3, eval_seqs=16),
        train=dict(steps=300, batch_size=32, block_size=128, micro_batch_size=32, warmup=30,
                   lr=2e-3, min_lr=1e-4, eval_seqs=32)),
}

# the paper's sizes (sail-sg/regmix lit_gpt/config.py), plus `tiny` for a CPU
PRESETS = {
    "tiny": dict(n_layer=2, n_head=4, n_embd=128, mlp_hidden=256, block_size=256, recipe="cpu"),
    "1m": dict(n_layer=2, n_head=8, n_embd=256, mlp_hidden=512, block_size=2048, recipe="paper"),
    # the 1m width, 8 layers: more fidelity to larger models for ~1.6x the 1m proxy's FLOPs per token (the
    # head, 79% of the 1m's, is unchanged; python model.py prints both); for --stage ladder and a sweep
    # that must rank like the target
    "1m-deep": dict(n_layer=8, n_head=8, n_embd=256, mlp_hidden=512, block_size=2048, recipe="paper"),
    "60m": dict(n_layer=10, n_head=8, n_embd=768, mlp_hidden=1536, block_size=2048, recipe="paper"),
    "1b": dict(n_layer=22, n_head=16, n_embd=2048, mlp_hidden=5632, block_size=2048, recipe="paper"),
}


def shape(preset):
    """The model's dimensions (model.ModelConfig's fields) of a preset."""
    return {k: v for k, v in PRESETS[preset].items() if k != "recipe"}


def recipe(preset):
    """The recipe a preset trains by (RECIPES' entry)."""
    return RECIPES[PRESETS[preset]["recipe"]]
