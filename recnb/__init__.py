"""recnb: helpers for the workbook on pretrained language models and RL in recommender systems.

Modules (one concept each):

* infrastructure: ``config`` (paths, seeds, device, run profile), ``cache`` (the one on-disk cache policy:
  locks, atomic writes, checksums), ``download`` (safe, verified downloads and extraction), ``_checks``
  (argument checks and the training-divergence guard), ``stats`` (every confidence interval),
  ``precision`` (mixed-precision training for the torch loops), ``tracking`` (the one logger training
  loops write their curves through), ``tuning`` (hyperparameter search with Optuna), ``checkpoints``
  (weights in safetensors, with their config and a fingerprint of what they were trained on);
* exercises: ``exercises`` (the checker of the "your turn" cells), ``exercise_tags`` (their cell tags and
  its lint), ``grading`` (the instructor's grading of submitted notebooks);
* chapters: ``data`` (MovieLens-100K), ``splits`` (evaluation protocols, histories), ``metrics`` and
  ``baselines`` (notebook 02), ``text``, ``encoder`` (the pretrained encoder's verified sources and
  loading), ``embeddings`` (encoding, cached) and ``coldstart`` (03), ``rewards``, ``calibration`` (the
  simulated user's choice and rating models), ``fidelity`` (their checks against held-out data),
  ``simulator`` (a package: the batched simulated user and its one-user reference), ``platform`` (what an
  agent may see), ``policies`` and
  ``envs`` (04), ``agents`` (tabular and bandits 05, DQN 06), ``genre_mdp`` (05), ``lm_rl`` (a package:
  cold-start catalogue, serving, TD fine-tuning, explanations; 07 and 08) and ``offline_rl`` (09, used by 10),
  ``ope``, ``ope_sim``, ``robustness`` and ``comparison`` (10);
* ``chapters`` (the chapter list, measured run times and Colab links: notebook 00 and the README).
"""

__version__ = "0.1.0"  # the one version number: pyproject.toml reads it; the Colab cells pin tag v<version>
