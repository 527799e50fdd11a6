"""Fitted Q evaluation (FQE) of a multi-agent policy on an offline dataset.

Le, Voloshin & Yue (ICML 2019), "Batch Policy Learning under Constraints", Algorithm 3 (FQE):
iterate

    Q_{k+1} = argmin_Q  E_{(s, a, r, s') ~ D} [ (Q(s, a) − y)^2 ],   y = r + γ · b · Q_k(s', π(s'))    (FQE-1)

and estimate the policy's value as the mean over the dataset's initial states

    V̂(π) = E_{s^0 ~ D} [ Q(s^0, π(s^0)) ].                                                          (FQE-2)

There is no max over actions: only the evaluated policy's joint action at s' is needed, so the
critic takes the joint action as an input and never enumerates the joint action space (11^5 on
2s3z). As in d3rlpy's ``FQE``/``DiscreteFQE``, the argmin of FQE-1 is approximated by gradient
steps on mini-batches, Q_k being a target network copied every ``target_update_interval`` updates.

The joint critic (:class:`JointCritic`): a centralised Q(s, o_1..o_N, a_1..a_N, t/T) whose agents
enter through one shared per-agent encoder e(o_i, id_i, a_i) (one-hot a_i, or a_i scaled to [-1, 1]),
concatenated in env order with an encoding of the state and time, then an MLP. Its size is linear
in N and it represents any Q^π (a monotonic or additive mixture of per-agent utilities need not:
Q^π of a fixed, non-greedy joint policy is in general not monotonic in per-agent terms).
docs/ope.md gives the reasons and the deviations from the papers.

Value bounds (``value_clip_margin``, on by default): every target y is clipped to a range of
returns-to-go widened by the margin times that range's width, and so is the estimate's Q(s^0, π(s^0)).
``value_bounds`` says which range: ``"data"`` (default) the dataset's own discounted returns-to-go,
``"env"`` the environment's episode-return range from the dataset specs (the papers' pool tables:
random to best policy, e.g. [0, 20] on SMAC) with 0 added (a return-to-go is a partial sum), or an
explicit ``[low, high]``. The data's range caps every policy better than the data at the data's best
return; the environment's does not. Without it, a policy that acts where the data has no support lets the
critic's extrapolation feed on itself through the γ = 1 bootstrap (on 2s3z low FQE gave SIT's
checkpoints 43–364 for simulator returns of 10–13). The fraction of targets clipped over the last
tenth of the fit is a diagnostic: a large one says the fit leaned on the bound, not on the data.

Conservative FQE (``conservative_weight`` α > 0, off by default): the policy-evaluation form of CQL
(Kumar et al., NeurIPS 2020, Eq. 2, with μ = the evaluated policy π) adds to FQE-1's loss

    α · ( E_{s ~ D, a' ~ π(s)} [Q(s, a')] − E_{(s, a) ~ D} [Q(s, a)] )                                 (FQE-3)

which pushes Q down at the policy's actions and up at the data's. Its fixed point (tabular, with the
squared TD error as written here, i.e. without CQL's ½) is Q̂ = B^π Q̂ − (α/2)(π/π_β − 1) pointwise, so
V̂ = E_π[Q̂] lies below V^π by (α/2) times the chi-square-like distance of π from the data's behaviour π_β
(CQL's Theorem 3.2 bound): a policy that acts where the data is thin is read lower, one that acts as
the data does is read without bias. The estimate is then a pessimistic one, meant for ranking.

``b`` (bootstrap flag) and γ: the simulator's return is the undiscounted sum of an episode's team
rewards, so the default is γ = 1 over a finite horizon (the last step of every episode, terminated
or cut by the limit, has y = r; the time feature t/T makes the horizon visible to the critic).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from rllib_sit.ope.data import OPEData, episode_subset
from rllib_sit.ope.policy import PolicyActions


def value_range(data: OPEData, source: Any, gamma: float) -> tuple:
    """The (low, high) range of returns-to-go that ``FQEConfig.value_bounds`` names for ``data``."""
    if source == "data":
        g = data.returns_to_go(gamma)
        return float(g.min()), float(g.max())
    if source == "env":
        from rllib_sit.data.composition import load_specs

        env = data.info.env_id
        spec = load_specs().get(env)
        rr = spec.return_range() if spec is not None else None
        if rr is None:
            raise ValueError(f"FQEConfig: value_bounds='env' needs the environment's return range; {data.path}: "
                             f"{env!r} has none in the dataset specs (expected 'data' or [low, high] for it)")
        return min(float(rr[0]), 0.0), max(float(rr[1]), 0.0)
    return float(source[0]), float(source[1])


@dataclass
class FQEConfig:
    """Settings of one FQE fit. ``validate()`` names the bad setting and value."""

    gamma: float = 1.0  # the simulator's episode return is the undiscounted sum (finite horizon)
    updates: int = 5000  # gradient steps; ~100 target copies at the interval below (≥ the 2s3z horizon of 120)
    batch_size: int = 256  # transitions per step (d3rlpy FQE: 100; larger is cheaper per sample on CPU)
    lr: float = 3e-4  # Adam (d3rlpy FQEConfig: 1e-4; faster here at the same stability on the tiny envs)
    target_update_interval: int = 50  # hard copy of Q_k (d3rlpy: 100); γ = 1 needs one copy per horizon step
    hidden: int = 128  # critic MLP width
    embed: int = 32  # per-agent embedding size of e(o_i, id_i, a_i)
    use_obs: bool = True  # agents' observations in the critic besides the global state
    num_action_samples: int = 4  # draws of a sampled policy's joint action per step, averaged in the target
    bootstrap_truncated: bool = False  # a time-limit end bootstraps (infinite-horizon reading); see data.py
    grad_clip: float = 10.0  # global gradient-norm clip
    huber: bool = False  # Huber instead of squared TD error
    value_clip_margin: Optional[float] = 0.1  # targets within the bounds' range ± margin·width; None: off
    value_bounds: Any = "data"  # "data" | "env" | [low, high]: the range the margin widens (module docstring)
    conservative_weight: float = 0.0  # α of FQE-3 (CQL's policy-evaluation penalty); 0: the papers' FQE
    ci_level: float = 0.95  # confidence level of the bootstrap interval
    ci_resamples: int = 2000  # bootstrap resamples of episodes
    bootstrap_fits: int = 0  # >0: refit FQE on that many episode resamples; the interval then covers fit variance
    log_every: int = 100  # TD-loss curve resolution (updates)
    max_table_bytes: int = 1 << 31  # precompute the critic inputs in RAM up to this size, else read per batch
    seed: int = 0  # numpy (batches, bootstrap) and torch (init, sampled actions) seed
    num_threads: int = 1  # torch intra-op threads of the fit

    def validate(self) -> "FQEConfig":
        def bad(name, want):
            raise ValueError(f"FQEConfig: {name}={getattr(self, name)!r} is invalid; expected {want}")

        if not (isinstance(self.gamma, (int, float)) and 0.0 < float(self.gamma) <= 1.0):
            bad("gamma", "a number in (0, 1]")
        for name in ("updates", "batch_size", "target_update_interval", "hidden", "embed", "num_action_samples",
                     "ci_resamples", "log_every", "num_threads", "max_table_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "an int >= 1")
        for name in ("bootstrap_fits", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(name, "an int >= 0")
        for name in ("lr", "grad_clip"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not float(v) > 0:
                bad(name, "a number > 0")
        v = self.conservative_weight
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and float(v) >= 0):
            bad("conservative_weight", "a finite number >= 0 (0: no penalty)")
        m = self.value_clip_margin
        if m is not None and (not isinstance(m, (int, float)) or isinstance(m, bool) or not float(m) >= 0):
            bad("value_clip_margin", "a number >= 0, or None (no clipping)")
        vb = self.value_bounds
        explicit = (isinstance(vb, (list, tuple)) and len(vb) == 2
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vb)
                    and float(vb[0]) < float(vb[1]))
        if vb not in ("data", "env") and not explicit:
            bad("value_bounds", "'data', 'env' or [low, high] with low < high")
        if not (isinstance(self.ci_level, float) and 0.0 < self.ci_level < 1.0):
            bad("ci_level", "a float in (0, 1)")
        for name in ("use_obs", "bootstrap_truncated", "huber"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "True or False")
        return self

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FQEConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], sorted(names), n=1)
            raise ValueError(f"FQEConfig: unknown setting {unknown[0]!r}"
                             + (f"; did you mean {hint[0]!r}?" if hint else f"; expected some of {sorted(names)}"))
        return cls(**d).validate()


@dataclass
class FQEResult:
    """An FQE estimate (FQE-2), its bootstrap interval and the fit's diagnostics."""

    estimate: float
    ci_low: float
    ci_high: float
    ci_level: float
    ci_method: str  # "initial-states" (resampled episodes' initial values) or "refit"
    initial_values: np.ndarray  # [K] Q(s^0_k, π(s^0_k)) per episode
    gamma: float
    explore: bool
    diagnostics: Dict[str, Any] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "initial_values"}
        d["num_episodes"] = int(len(self.initial_values))
        return _jsonable(d)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def fqe_td_target(reward: np.ndarray, bootstrap: np.ndarray, q_next: np.ndarray, gamma: float) -> np.ndarray:
    """FQE-1's target ``y = r + γ · b · mean_m Q_k(s', a'_m)`` with ``q_next [B, M]`` the target
    critic at the M draws a'_m ~ π(s') (M = 1: a deterministic policy). Works on numpy or torch."""
    return reward + gamma * bootstrap * q_next.mean(-1)


def bootstrap_interval(values: np.ndarray, level: float, resamples: int, seed: int = 0):
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(int(resamples), len(values)))
    means = values[idx].mean(1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


# ------------------------------------------------------------------------------------------------
# The joint critic
# ------------------------------------------------------------------------------------------------

def _make_critic(state_dim: int, obs_dim: int, n_agents: int, action_dim: int, hidden: int, embed: int,
                 use_obs: bool):
    import torch
    from torch import nn

    class JointCritic(nn.Module):
        """Q(s, o, a, t) = head([enc_s(s, t/T), e(o_1, id_1, a_1), ..., e(o_N, id_N, a_N)]) (see the module docstring)."""

        def __init__(self):
            super().__init__()
            self.n_agents, self.use_obs = n_agents, use_obs
            agent_in = (obs_dim if use_obs else 0) + n_agents + action_dim
            self.agent_enc = nn.Sequential(nn.Linear(agent_in, hidden), nn.ReLU(), nn.Linear(hidden, embed), nn.ReLU())
            self.state_enc = nn.Sequential(nn.Linear(state_dim + 1, hidden), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(hidden + n_agents * embed, hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.register_buffer("agent_ids", torch.eye(n_agents))

        def forward(self, state, obs, t, action_feat):
            """``state [B, S]``, ``obs [B, N, od]``, ``t [B, 1]``, ``action_feat [B, N, a]`` -> Q [B]."""
            B = state.shape[0]
            parts = ([obs] if self.use_obs else []) + [self.agent_ids.expand(B, -1, -1), action_feat]
            e = self.agent_enc(torch.cat(parts, -1)).reshape(B, -1)
            h = self.state_enc(torch.cat([state, t], -1))
            return self.head(torch.cat([h, e], -1)).squeeze(-1)

    return JointCritic()


def numpy_critic(critic, state, obs, t, action_feat) -> np.ndarray:
    """:class:`JointCritic`'s forward in NumPy from its weights (tests recompute the TD target with it)."""
    P = {k: v.detach().double().numpy() for k, v in critic.state_dict().items()}
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    lin = lambda x, n: x @ P[f"{n}.weight"].T + P[f"{n}.bias"]  # noqa: E731
    B, N = state.shape[0], action_feat.shape[1]
    parts = ([obs] if critic.use_obs else []) + [np.broadcast_to(np.eye(N), (B, N, N)), action_feat]
    x = np.concatenate(parts, -1)
    e = relu(lin(relu(lin(x, "agent_enc.0")), "agent_enc.2")).reshape(B, -1)
    h = relu(lin(np.concatenate([state, t], -1), "state_enc.0"))
    z = relu(lin(relu(lin(np.concatenate([h, e], -1), "head.0")), "head.2"))
    return lin(z, "head.4")[:, 0]


# ------------------------------------------------------------------------------------------------
# FQE
# ------------------------------------------------------------------------------------------------

class FQE:
    """Fits Q^π of one policy's actions on one dataset. Usage::

        fqe = FQE(data, policy_actions, FQEConfig(updates=5000))
        result = fqe.fit()            # FQEResult: estimate, ci_low/ci_high, diagnostics

    ``policy_actions``: :class:`PolicyActions` at every dataset step (``CheckpointPolicy.actions``).
    """

    def __init__(self, data: OPEData, policy_actions: PolicyActions, config: Optional[FQEConfig] = None):
        import torch

        self.data, self.pa = data, policy_actions
        self.config = (config or FQEConfig()).validate()
        info = data.info
        K, T1 = data.num_episodes, info.episode_limit + 1
        if policy_actions.actions.shape[:2] != (K, T1) or policy_actions.actions.shape[3] != info.n_agents:
            raise ValueError(f"policy actions have shape {list(policy_actions.actions.shape)}; expected "
                             f"[{K}, {T1}, M, {info.n_agents}{'' if info.discrete else ', ' + str(info.act_dim)}]")
        self.torch = torch
        self.action_dim = info.n_actions if info.discrete else info.act_dim
        self.value_bounds = self._value_bounds()  # before the table: a bad source fails before any work
        self._table = self._build_table()

    def _value_bounds(self) -> Optional[tuple]:
        """(low, high) of the targets: ``config.value_bounds``' range widened by the margin (module docstring)."""
        m = self.config.value_clip_margin
        if m is None:
            return None
        lo, hi = value_range(self.data, self.config.value_bounds, float(self.config.gamma))
        width = hi - lo if hi > lo else max(abs(hi), 1.0)
        return lo - float(m) * width, hi + float(m) * width

    def clip_values(self, x):
        """``x`` clipped to :attr:`value_bounds` (unchanged without bounds); numpy or torch."""
        if self.value_bounds is None:
            return x
        lo, hi = self.value_bounds
        return x.clamp(lo, hi) if hasattr(x, "clamp") else np.clip(x, lo, hi)

    # -- inputs ---------------------------------------------------------------------------------
    def _build_table(self) -> Optional[Dict[str, Any]]:
        """Critic inputs of every step t = 0..length of every episode in RAM (torch), if small enough."""
        d, info = self.data, self.data.info
        rows = int((d.lengths + 1).sum())
        per_row = 4 * (info.state_dim + 1 + (info.n_agents * info.obs_dim if self.config.use_obs else 0))
        if rows * per_row > self.config.max_table_bytes:
            return None
        k = np.repeat(np.arange(d.num_episodes), d.lengths + 1)
        starts = np.concatenate([[0], np.cumsum(d.lengths + 1)])
        t = np.arange(rows) - starts[k]
        chunks = {"state": [], "obs": [], "time": []}
        for lo in range(0, rows, 65536):
            f = d.features(k[lo:lo + 65536], t[lo:lo + 65536])
            for name in chunks:
                chunks[name].append(f[name] if (name != "obs" or self.config.use_obs) else f[name][:, :0])
        torch = self.torch
        return {"starts": starts, **{n: torch.from_numpy(np.concatenate(v)) for n, v in chunks.items()}}

    def inputs(self, k: np.ndarray, t: np.ndarray):
        """Critic inputs (torch) at steps ``(k, t)``: (state, obs, time)."""
        torch = self.torch
        if self._table is not None:
            r = torch.from_numpy(self._table["starts"][k] + t)
            return self._table["state"][r], self._table["obs"][r], self._table["time"][r]
        f = self.data.features(k, t)
        obs = f["obs"] if self.config.use_obs else f["obs"][:, :, :0]
        return torch.from_numpy(f["state"]), torch.from_numpy(obs), torch.from_numpy(f["time"])

    def action_features(self, actions: np.ndarray):
        """One-hot ``[.., N, n_actions]`` (discrete) or box actions scaled to [-1, 1] (continuous), torch."""
        torch, info = self.torch, self.data.info
        a = torch.from_numpy(np.asarray(actions))
        if info.discrete:
            return torch.nn.functional.one_hot(a.long(), info.n_actions).float()
        return 2.0 * (a.float() - info.action_low) / (info.action_high - info.action_low) - 1.0

    # -- the TD target ----------------------------------------------------------------------------
    def td_targets(self, critic, rows: np.ndarray, clip: bool = True):
        """FQE-1's targets y [B] of transitions ``rows`` (indices into ``data.k``) under ``critic`` (Q_k),
        clipped to the value bounds unless ``clip`` is False."""
        torch, d = self.torch, self.data
        k, t = d.k[rows], d.t[rows]
        s, o, tm = self.inputs(k, t + 1)
        with torch.no_grad():  # mean over the M draws of π(s') [B, M, N(, A)]
            q_next = self._q_at(critic, s, o, tm, self.pa.actions[k, t + 1]).unsqueeze(-1)
        r = torch.from_numpy(d.rewards(k, t))
        b = torch.from_numpy(d.bootstrap[rows])
        y = fqe_td_target(r, b, q_next, float(self.config.gamma))
        return self.clip_values(y) if clip else y

    def q_of_policy(self, critic, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Q(s^t, π(s^t)) [B] averaged over the M draws."""
        torch = self.torch
        s, o, tm = self.inputs(k, t)
        with torch.no_grad():
            return self._q_at(critic, s, o, tm, self.pa.actions[k, t]).double().numpy()

    # -- fitting ----------------------------------------------------------------------------------
    def _q_at(self, critic, s, o, tm, actions):
        """Q(s, a) [B] averaged over the M joint actions ``actions [B, M, N(, A)]`` (with gradients)."""
        B, M = actions.shape[:2]
        rep = lambda x: x.unsqueeze(1).expand(B, M, *x.shape[1:]).reshape(B * M, *x.shape[1:])  # noqa: E731
        af = self.action_features(actions.reshape(B * M, *actions.shape[2:]))
        return critic(rep(s), rep(o), rep(tm), af).reshape(B, M).mean(1)

    def batch_loss(self, critic, target, rows: np.ndarray, loss_fn=None):
        """The loss of one mini-batch of transitions ``rows``: FQE-1's TD error against the target critic
        and, with ``conservative_weight`` α > 0, the policy-evaluation penalty of CQL (FQE-3)::

            L = E_D[(Q(s, a) − y)^2] + α · ( E_{s ~ D, a' ~ π(s)}[Q(s, a')] − E_{(s, a) ~ D}[Q(s, a)] )

        Returns ``(loss, y, y_raw)``: the clipped and unclipped targets besides the loss."""
        torch, d = self.torch, self.data
        if loss_fn is None:
            loss_fn = torch.nn.functional.smooth_l1_loss if self.config.huber else torch.nn.functional.mse_loss
        y_raw = self.td_targets(target, rows, clip=False)
        y = self.clip_values(y_raw)
        k, t = d.k[rows], d.t[rows]
        s, o, tm = self.inputs(k, t)
        q = critic(s, o, tm, self.action_features(d.dataset_actions(k, t)))
        loss = loss_fn(q, y.float())
        alpha = float(self.config.conservative_weight)
        if alpha > 0:
            q_pi = self._q_at(critic, s, o, tm, self.pa.actions[k, t])
            loss = loss + alpha * (q_pi.mean() - q.mean())
        return loss, y, y_raw

    def new_critic(self):
        info = self.data.info
        return _make_critic(info.state_dim, info.obs_dim, info.n_agents, self.action_dim, self.config.hidden,
                            self.config.embed, self.config.use_obs)

    def fit_critic(self, transitions: Optional[np.ndarray] = None, seed: Optional[int] = None,
                   progress: Optional[Any] = None):
        """Fit Q^π by FQE-1 on ``transitions`` (indices into ``data.k``; default all).

        Returns ``(critic, loss curve [(update, mean TD loss over the last log_every updates)])``.
        """
        torch, cfg, d = self.torch, self.config, self.data
        seed = cfg.seed if seed is None else int(seed)
        before = torch.get_num_threads()
        torch.set_num_threads(cfg.num_threads)
        try:
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            critic = self.new_critic()
            target = copy.deepcopy(critic).requires_grad_(False)
            opt = torch.optim.Adam(critic.parameters(), lr=float(cfg.lr))
            rows_all = np.arange(d.num_transitions) if transitions is None else np.asarray(transitions)
            loss_fn = torch.nn.functional.smooth_l1_loss if cfg.huber else torch.nn.functional.mse_loss
            curve: List[List[float]] = []
            acc, n_acc = 0.0, 0
            tail_from, n_clipped = cfg.updates - max(1, cfg.updates // 10), 0
            for u in range(1, cfg.updates + 1):
                rows = rows_all[rng.integers(0, len(rows_all), cfg.batch_size)]
                loss, y, y_raw = self.batch_loss(critic, target, rows, loss_fn)
                if u > tail_from:
                    n_clipped += int((y != y_raw).sum())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(critic.parameters(), float(cfg.grad_clip))
                opt.step()
                if u % cfg.target_update_interval == 0:
                    target.load_state_dict(critic.state_dict())
                acc, n_acc = acc + float(loss.item()), n_acc + 1
                if u % cfg.log_every == 0 or u == cfg.updates:
                    curve.append([u, acc / n_acc])
                    acc, n_acc = 0.0, 0
                    if progress is not None:
                        progress(u, curve[-1][1])
            self.clipped_fraction_last = n_clipped / float((cfg.updates - tail_from) * cfg.batch_size)
            return critic, curve
        finally:
            torch.set_num_threads(before)

    def fit(self, progress: Optional[Any] = None) -> FQEResult:
        """Fit, estimate (FQE-2) and the bootstrap interval; ``bootstrap_fits`` > 0 refits on episode resamples."""
        cfg, d = self.config, self.data
        t0 = time.time()
        critic, curve = self.fit_critic(progress=progress)
        K = d.num_episodes
        clipped_last = self.clipped_fraction_last
        init_raw = self.q_of_policy(critic, np.arange(K), np.zeros(K, np.int64))
        init = self.clip_values(init_raw)
        estimate = float(init.mean())
        if cfg.bootstrap_fits > 0:
            rng = np.random.default_rng(cfg.seed + 1)
            refits = []
            for j in range(cfg.bootstrap_fits):
                eps = rng.integers(0, K, K)
                c, _ = self.fit_critic(episode_subset(d, eps), seed=cfg.seed + 1 + j)
                refits.append(float(self.clip_values(self.q_of_policy(c, eps, np.zeros(K, np.int64))).mean()))
            a = (1.0 - cfg.ci_level) / 2.0
            lo, hi, method = float(np.quantile(refits, a)), float(np.quantile(refits, 1 - a)), "refit"
        else:
            lo, hi = bootstrap_interval(init, cfg.ci_level, cfg.ci_resamples, cfg.seed)
            method = "initial-states"
        diag = self.diagnostics(critic, curve)
        diag.update(clipped_fraction_last=clipped_last, initial_values_clipped=float(np.mean(init != init_raw)),
                    value_bounds=None if self.value_bounds is None else list(self.value_bounds))
        diag["fit_seconds"] = round(time.time() - t0, 2)
        return FQEResult(estimate=estimate, ci_low=lo, ci_high=hi, ci_level=cfg.ci_level, ci_method=method,
                         initial_values=init, gamma=float(cfg.gamma), explore=bool(self.pa.explore),
                         diagnostics=diag, config=asdict(cfg))

    def diagnostics(self, critic, curve: Sequence[Sequence[float]]) -> Dict[str, Any]:
        """TD-loss curve (start, end), the Q scale on the data and the dataset's own returns for reference."""
        d = self.data
        rng = np.random.default_rng(0)
        rows = rng.choice(d.num_transitions, size=min(d.num_transitions, 4096), replace=False)
        k, t = d.k[rows], d.t[rows]
        s, o, tm = self.inputs(k, t)
        with self.torch.no_grad():
            q_data = critic(s, o, tm, self.action_features(d.dataset_actions(k, t))).double().numpy()
        y = self.td_targets(critic, rows).double().numpy()
        tail = [c[1] for c in curve[-max(1, len(curve) // 10):]]
        returns = d.episode_returns
        return {"td_loss_first": float(curve[0][1]) if curve else None,
                "td_loss_last": float(np.mean(tail)) if tail else None,
                "td_loss_curve": [[int(u), float(v)] for u, v in curve],
                "bellman_residual_rms": float(np.sqrt(np.mean((q_data - y) ** 2))),
                "q_data_mean": float(q_data.mean()), "q_data_std": float(q_data.std()),
                "behaviour_return_mean": float(returns.mean()), "behaviour_return_std": float(returns.std()),
                "num_episodes": d.num_episodes, "num_transitions": d.num_transitions,
                "num_action_samples": int(self.pa.num_samples)}
