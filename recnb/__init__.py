"""recnb: helpers for the workbook on pretrained language models and RL in recommender systems.

Modules (one concept each): ``config`` (paths, seeds, device, run profile), ``download`` (safe,
verified, atomic files), ``data`` (MovieLens-100K), ``splits`` (evaluation protocols, histories),
``exercises`` (checkers for "your turn" cells). Later notebooks add their own modules.
"""

__version__ = "0.1.0"
REPO_URL = "https://github.com/recnb/recnb"
