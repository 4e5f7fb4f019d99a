"""Agents for the simulated user (notebooks 05-07): one module per family, imported on demand.

* ``recnb.agents.bandits`` -- epsilon-greedy and UCB bandits over a few arms (notebook 05).
* ``recnb.agents.tabular`` -- exact dynamic programming and tabular Q-learning / SARSA (notebook 05).
* ``recnb.agents.networks`` -- Q-networks that score every item from state and item features (notebook 06).
* ``recnb.agents.observe`` -- what an agent observes: the platform's view as network inputs (notebooks 06-07).
* ``recnb.agents.replay`` -- the on-device replay buffer with n-step returns (notebook 06).
* ``recnb.agents.dqn`` -- the DQN agent, its config and TD rules (notebook 06); it observes the
  platform's view (``recnb.platform``), never the simulator's state.

Import the module you need (``from recnb.agents import tabular``); this file imports nothing so
that the light tabular chapter does not pay for the deep-learning ones.
"""
