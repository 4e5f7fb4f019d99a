"""Agents for the simulated user (notebooks 05-07): one module per family, imported on demand.

* ``recnb.agents.bandits`` -- epsilon-greedy and UCB bandits over a few arms (notebook 05).
* ``recnb.agents.tabular`` -- exact dynamic programming and tabular Q-learning / SARSA (notebook 05).

Import the module you need (``from recnb.agents import tabular``); this file imports nothing so
that the light tabular chapter does not pay for the deep-learning ones.
"""
