"""recnb: helpers for the workbook on pretrained language models and RL in recommender systems.

Modules (one concept each): ``config`` (paths, seeds, device, run profile), ``cache`` (the one
on-disk cache policy: locks, atomic writes, checksums), ``download`` (safe, verified downloads and
extraction), ``_checks`` (argument checks and the training-divergence guard), ``stats`` (every confidence interval), ``data`` (MovieLens-100K), ``splits`` (evaluation protocols, histories),
``exercises`` (checkers for "your turn" cells, their tags and the instructor's grading), ``metrics`` and ``baselines`` (notebook 02), ``text``,
``embeddings`` and ``coldstart`` (03), ``rewards``, ``calibration`` (the simulated user's choice and
rating models, fidelity checks), ``simulator``, ``platform`` (what an agent may see), ``policies`` and
``envs`` (04), ``agents`` (tabular and bandits 05, DQN 06), ``genre_mdp`` (05), ``lm_rl`` and
``offline_rl`` (07, used by 08), ``ope``, ``ope_sim``, ``robustness`` and ``comparison`` (08);
``chapters`` (the chapter list, measured run times and Colab links: notebook 00 and the README).
"""

__version__ = "0.1.0"  # the one version number: pyproject.toml reads it; the Colab cells pin tag v<version>
