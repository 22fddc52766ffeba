"""Deep-learning stage: packed inputs, ImageNet CNNs, Optuna tuning, holdout evaluation, saliency.

Modules: ``pack`` (scalograms -> one (N, 3, H, W) array per input size), ``models``
(torchvision architectures with a new head), ``train`` (one fit, checkpointed), ``tune``
(Optuna TPE over CV folds, in parallel workers), ``study`` (the study the workers share:
storage, orphan recovery, trial budget), ``embed`` (a network's penultimate embeddings),
``fold_embeddings`` (the best trial's CV fold embeddings, the OOD threshold's source),
``final`` (refit on all training cells, model.pt), ``evaluate``
(holdout metrics), ``saliency`` (input gradients on the scalogram's axes), ``stages`` (one entry
function per stage, run by the workflow's scripts and by ``cli``), ``cli``.
torch is imported only inside these modules, never by ``sts`` itself.
"""

import os

# libgomp's default spin-waiting collapses when the cores are shared (other jobs, CI):
# measured 5 -> 73 images/s for MobileNetV2 at 64 px on 2 busy cores. Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
