"""Mixture reuse judged on Olmix's own data (issue 35): does the mixture that reuse finds from Olmix's
update-5 swarm (64 runs over `existing` + 21 new domains) hold up against the full recomputation?

    python bench/reuse_judge.py [--reuse o/reuse] [--full o/full]

The judge: a regressor fitted on Olmix's full-recomputation swarm (512 proxy runs over all 64
domains, the same proxy scale and metrics), target the mean of the 110 metrics (bits per byte, lower
is better), chosen among LightGBM, quadratic and GP by 5-fold cross-validated Spearman, which is
printed. It predicts, on the 64 leaves (the reuse swarm names the new topics `s2pdfv1:`, the full
one `s2pdf:`):
    reuse      OUT/mixture.json of --reuse (fit + simulate --reuse, the issue's two commands)
    best run   the reuse swarm's best run, its `existing` weight spread over the 43 members
    natural    the full swarm's prior (Olmix's relative sizes of the 64 domains)
    full pick  this project's pick from the full 512-run swarm (fit --target all + simulate in --full)
and it ranks the reuse swarm's 64 runs, composed to the leaves, against what they measured: where
the judge and the swarm's own fit disagree shows there.
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import regression  # noqa: E402
import regressors  # noqa: E402
import reuse  # noqa: E402
from results import Results  # noqa: E402

PEERS = os.path.join(ROOT, "..", "shared", "anchors", "peers")
p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--reuse", default="o/reuse", help="the --out of fit + simulate --reuse on the update-5 swarm")
p.add_argument("--full", default="o/full", help="the --out of fit + simulate on the full 512-run swarm (optional)")
p.add_argument("--peers", default=PEERS, help="the folder of Olmix's released files")
args = p.parse_args()


def table(kind):
    return Results(os.path.join(args.peers, f"olmix_{kind}_ratios.csv"), os.path.join(args.peers, f"olmix_{kind}_metrics.csv"))


full = table("full_recomputation")
_, tw = regression.target_weights("all", full.loss_domains, full.domains, "the full swarm")
X, y, _ = full.target(tw)
leaves = full.domains
rename = lambda d: d.replace("s2pdfv1:", "s2pdf:")  # noqa: E731  (the two swarms' names for the new topics)

# the judge: the best of three by 5-fold cross-validated Spearman on the 512 runs
leaf = regressors.leaf_size(len(y), None, X.shape[1])
cv = regression.predictions(["lightgbm", "quadratic", "gp"], X, y, leaf=leaf, members=[])
rho = {n: regression.metrics(y, p)["spearman"] for n, p in cv.items()}
name = regression.choose(rho)
with regressors.one_blas_thread():
    judge = regressors.fit(name, X, y, leaf)
rmse = float(np.sqrt(np.mean((y - cv[name]) ** 2)))
print(f"judge: {name} on the full swarm's {len(y)} runs x {len(leaves)} domains, target the mean of {len(tw)} metrics; "
      "5-fold CV Spearman " + ", ".join(f"{n} {r:.3f}" for n, r in rho.items()) + f"; its CV RMSE {rmse:.4f}")


def vector(weights):
    w = {rename(d): v for d, v in weights.items()}
    unknown = sorted(set(w) - set(leaves))
    if unknown:
        sys.exit(f"{unknown[0]}: not a domain of the full swarm")
    return np.array([w.get(d, 0.0) for d in leaves])


mix = json.load(open(os.path.join(args.reuse, "mixture.json")))
grouping = reuse.Reuse(**mix["reuse"])
swarm = table("full_reuse_update_5_seed_0")
_, tw5 = regression.target_weights("all", swarm.loss_domains, swarm.domains, "the reuse swarm")
Xs, ys, _ = swarm.target(tw5)
composed = reuse.to_leaves(grouping, Xs, swarm.domains, grouping.leaves(swarm.domains))
composed = np.array([vector(dict(zip(grouping.leaves(swarm.domains), row))) for row in composed])
prior = json.load(open(os.path.join(args.peers, "olmix_full_recomputation_prior.json")))
rivals = {"reuse": vector(mix["weights"]), "best run of the reuse swarm": composed[np.argmin(ys)],
          "natural (full prior)": vector(prior) / sum(prior.values())}
rivals["best run of the full swarm"] = X[np.argmin(y)]
if os.path.exists(os.path.join(args.full, "mixture.json")):
    full_mix = json.load(open(os.path.join(args.full, "mixture.json")))
    rivals["full pick (512 runs)"] = vector(full_mix["weights"])
judged = judge.predict(np.vstack(list(rivals.values())))
print(f"\nthe judge's predicted mean bits per byte (lower is better; the full swarm's runs: best {y.min():.4f}, "
      f"median {np.median(y):.4f}, sd {y.std():.4f}):")
for (k, w), v in zip(rivals.items(), judged):
    print(f"  {k:<30} {v:.4f}   existing members' total {sum(w[leaves.index(m)] for m in grouping.groups['existing']):.3f}")
on_swarm = judge.predict(composed)
print(f"\nthe reuse swarm's 64 runs, composed to the 64 leaves: the judge ranks them against what they measured with "
      f"Spearman {regression.metrics(ys, on_swarm)['spearman']:.3f} (the swarm's own fit: CV rho "
      f"{json.load(open(os.path.join(args.reuse, 'fit.json')))['trust']['cv_spearman']:.3f}); measured spread "
      f"sd {ys.std():.4f}, the judge's sd on them {on_swarm.std():.4f}")
print(f"the full swarm's best run measured {y.min():.4f}" + (
    f"; the project's fit on the full swarm predicts its own pick at {full_mix['predicted_loss']:.4f}, the judge at "
    f"{judged[list(rivals).index('full pick (512 runs)')]:.4f}" if "full pick (512 runs)" in rivals else ""))
