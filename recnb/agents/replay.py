"""An on-device replay buffer for batched collection, with n-step returns computed at sampling (notebook 06).

Transitions from ``n_envs`` parallel users are stored time-major, ``[T, n_envs]``, in tensors on the
training device: one ``add`` writes a whole batch with a few tensor copies, and sampling never
leaves the device. Because column ``b`` holds user slot ``b``'s consecutive steps, an n-step return
is read off the next ``n`` rows of that column, cut at the first step where the episode ended.
"""

from __future__ import annotations

import torch

from .._checks import check_int

OBS_KEYS = ("user", "history", "user_id")


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions from ``n_envs`` users stepped together (notebook 06)."""

    def __init__(
        self,
        capacity: int,
        n_envs: int,
        user_dim: int,
        history_len: int,
        n_items: int,
        device: str | torch.device = "cpu",
        with_immediate: bool = False,
    ):
        check_int("n_envs", n_envs, minimum=1)
        check_int(f"capacity (at least one row of n_envs = {n_envs}; raise buffer_size)", capacity, minimum=n_envs)
        self.rows, self.n_envs, self.device = capacity // n_envs, n_envs, torch.device(device)
        T, B, dev = self.rows, n_envs, self.device

        def zeros(*shape, dtype=torch.float32):
            return torch.zeros(T, B, *shape, dtype=dtype, device=dev)

        self.data = {
            "user": zeros(user_dim),
            "history": zeros(history_len, dtype=torch.long),
            "user_id": zeros(dtype=torch.long),
            "action": zeros(dtype=torch.long),
            "reward": zeros(),
            "terminated": zeros(dtype=torch.bool),
            "ended": zeros(dtype=torch.bool),  # terminated or truncated: where an n-step return stops
            "next_user": zeros(user_dim),
            "next_history": zeros(history_len, dtype=torch.long),
            "next_user_id": zeros(dtype=torch.long),
            "next_mask": zeros(n_items, dtype=torch.bool),
        }
        if with_immediate:  # the click model's immediate rewards: of the taken item, and of every next item
            self.data["immediate"] = zeros()
            self.data["next_immediate"] = zeros(
                n_items, dtype=torch.float16
            )  # half the memory; a feature, not a target
        self.head, self.size = 0, 0  # next row to write; rows filled

    def __len__(self) -> int:
        return self.size * self.n_envs

    def add(self, obs: dict, action, reward, terminated, truncated, next_obs: dict) -> None:
        """Store one step of every user: ``next_obs`` is the state *after* the step (before any reset)."""
        row, d = self.head, self.data
        for key in OBS_KEYS:
            d[key][row] = obs[key]
            d["next_" + key][row] = next_obs[key]
        d["next_mask"][row] = next_obs["mask"]
        if "immediate" in d:
            d["immediate"][row] = obs["immediate"].gather(1, action[:, None]).squeeze(1)
            d["next_immediate"][row] = next_obs["immediate"]
        d["action"][row], d["reward"][row] = action, reward
        d["terminated"][row], d["ended"][row] = terminated, terminated | truncated
        self.head = (row + 1) % self.rows
        self.size = min(self.size + 1, self.rows)

    def sample(self, batch_size: int, n_step: int, gamma: float, generator: torch.Generator | None = None) -> dict:
        """A batch of n-step transitions: ``reward`` = discounted sum, ``discount`` = gamma**steps taken.

        ``terminated``/``ended`` and the ``next_*`` fields belong to the last step used, so the target
        is ``reward + discount * (1 - terminated) * V(next)``; a truncated episode still bootstraps.
        """
        if self.size < n_step:
            raise RuntimeError(f"the buffer holds {self.size} rows; collect at least n_step={n_step} steps first")
        dev, T = self.device, self.rows
        start = (self.head - self.size) % T  # oldest row
        t = torch.randint(0, self.size - n_step + 1, (batch_size,), generator=generator, device=dev)
        b = torch.randint(0, self.n_envs, (batch_size,), generator=generator, device=dev)
        rows = (start + t[:, None] + torch.arange(n_step, device=dev)) % T  # [M, n]
        cols = b[:, None].expand_as(rows)
        ended = self.data["ended"][rows, cols]
        # a step counts while no earlier step of the window ended the episode
        alive = torch.cumprod(torch.cat([torch.ones_like(ended[:, :1]), ~ended[:, :-1]], 1).float(), 1)
        powers = gamma ** torch.arange(n_step, device=dev, dtype=torch.float32)
        reward = (self.data["reward"][rows, cols] * alive * powers).sum(1)
        steps = alive.sum(1).long()  # 1..n
        last_row, first_row = rows.gather(1, (steps - 1)[:, None]).squeeze(1), rows[:, 0]
        with_immediate = "immediate" in self.data
        out = {
            key: self.data[key][first_row, b]
            for key in (*OBS_KEYS, "action") + (("immediate",) if with_immediate else ())
        }
        for key in ("terminated", "ended", "next_user", "next_history", "next_user_id", "next_mask") + (
            ("next_immediate",) if with_immediate else ()
        ):
            out[key] = self.data[key][last_row, b]
        out["reward"], out["discount"], out["steps"] = reward, gamma ** steps.float(), steps
        return out

    @staticmethod
    def next_obs(batch: dict) -> dict:
        """The bootstrap observation of a sampled batch, keyed like an observation."""
        out = {
            "user": batch["next_user"],
            "history": batch["next_history"],
            "user_id": batch["next_user_id"],
            "mask": batch["next_mask"],
        }
        if "next_immediate" in batch:
            out["immediate"] = batch["next_immediate"].float()
        return out

    @staticmethod
    def obs(batch: dict) -> dict:
        """The starting observation of a sampled batch."""
        return {key: batch[key] for key in (*OBS_KEYS, "immediate") if key in batch}
