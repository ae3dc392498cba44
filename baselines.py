"""
The mixtures a search must beat, because a user (or a reviewer) would try them first:

    natural    each domain's share of the training tokens (the prior)
    uniform    every domain alike
    unimax     UniMax (Chung et al. 2023): the target run's tokens spread uniformly over the
               domains, none repeated more than E epochs; UtiliMax (Held et al. 2025) found it
               ahead of learned mixtures among nine baselines
    best run   the proxy run with the best measured target
    target     the target domain alone, where it is a trained domain

simulate predicts each of them, and --stage compare trains them (search.py, regmix.py).
"""
import numpy as np


def unimax(train_tokens, budget, max_epochs=4.0):
    """UniMax's allocation as weights: the smallest domain first, each gets an equal share of the
    budget still to give, at most max_epochs x its tokens; what it cannot take passes on to the
    larger ones. Where even every domain at its cap cannot fill the budget the result is
    every domain at its cap, renormalised (the natural mixture): the data is too small for the run."""
    tokens = np.asarray(train_tokens, dtype=float)
    alloc = np.zeros(len(tokens))
    left = float(budget)
    for k, i in enumerate(np.argsort(tokens, kind="stable")):
        alloc[i] = min(left / (len(tokens) - k), max_epochs * tokens[i])
        left -= alloc[i]
    return alloc / alloc.sum()


def rivals(names, prior, best_run, target_weights, unimax_weights=None):
    """The rivals over `names`, in the order simulate's table shows them: natural, uniform, UniMax
    (where the data's token counts are known), the best run, and the target alone where the target
    is one trained domain."""
    out = {"natural (prior)": np.asarray(prior, float), "uniform": np.full(len(names), 1 / len(names))}
    if unimax_weights is not None:
        out["unimax"] = unimax_weights
    out["best proxy run"] = best_run
    target = list(target_weights)
    if len(target) == 1 and target[0] in names:
        out["target alone"] = np.eye(len(names))[names.index(target[0])]
    return out


def kl(w, prior):
    """KL(w || prior) of each row of w, in nats (0 log 0 = 0)."""
    w = np.atleast_2d(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w > 0, w * np.log(w / prior), 0.0).sum(1)
