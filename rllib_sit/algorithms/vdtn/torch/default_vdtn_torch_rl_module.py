"""VD+TN's networks as RLModules: one module per agent (``module_mapping="agent_id"``), MLPs on
the agent's own observation o_i (paper Appendix B: ReLU MLPs, (256, 256) in SMAC/DG, (64, 64) in
MuJoCo).

Every module may hold the two density VAEs of transition normalization (§3.4): ``tn_vae_sa`` on
x¹ = (o_i, a_i) and ``tn_vae_sas`` on x² = (o_i, a_i, r, o_i′, done); both reconstruct their whole
input (the paper reads ρ_N(μ¹) and ρ_N(μ²) as the densities of (s, a) and (s, a, s′)), latent
size 10 (Table 12, "VAE hidden space"). ``log λ_tn = log ρ_N(μ¹) − log ρ_N(μ²) = ½‖μ²‖² − ½‖μ¹‖²``
(the N(0, I) normalising constants cancel: same latent size).

Per base algorithm (what the TD target and the greedy action are):

* :class:`VDTNDiscreteBCQModule` — discrete BCQ (Fujimoto et al. 2019b): Q_i(s, ·) and a behaviour
  model μ_i(·|s); the max of the target and the greedy action run over available actions with
  μ(a|s)/max μ ≥ τ.
* :class:`VDTNDiscreteCQLModule` — discrete CQL: Q_i(s, ·), max over the available actions.
* :class:`VDTNContinuousBCQModule` — BCQ: Q_i(s, a), G¹ (BCQ's conditional action VAE), ξ_i
  (|ξ| ≤ Φ); the best of n perturbed samples (§3.4's π_i).
* :class:`VDTNContinuousCQLModule` — CQL(H) with a tanh-Gaussian actor.
* :class:`VDTNTD3BCModule` — TD3+BC: twin critics, deterministic tanh actor.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_sit.algorithms.vdtn import vdtn_learner as V
from rllib_sit.models.blocks import mlp
from rllib_sit.models.discrete import bcq_action_filter, masked_argmax
from rllib_sit.models.recurrent_agent import TargetNetworksMixin, split_env_obs

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class DensityVAE(nn.Module):
    """A VAE over its whole input x: encoder x -> (μ, σ), decoder z -> x̂ (BCQ's log-σ clamp [−4, 15])."""

    def __init__(self, in_dim: int, latent: int, hidden: List[int]):
        super().__init__()
        self.latent = latent
        self.encoder = mlp(in_dim, hidden, 2 * latent)
        self.decoder = mlp(latent, hidden, in_dim)

    def encode(self, x: torch.Tensor):
        mean, log_std = self.encoder(x).split(self.latent, -1)
        return mean, log_std.clamp(-4.0, 15.0).exp()

    def forward(self, x: torch.Tensor):
        mean, std = self.encode(x)
        return self.decoder(mean + std * torch.randn_like(std)), mean, std


class ActionVAE(nn.Module):
    """BCQ's conditional VAE G¹: encoder (s, a) -> (μ, σ), decoder (s, z) -> tanh(·) in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, latent: int, hidden: List[int]):
        super().__init__()
        self.latent = latent
        self.encoder = mlp(obs_dim + act_dim, hidden, 2 * latent)
        self.decoder = mlp(obs_dim + latent, hidden, act_dim)

    def decode(self, s: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        if z is None:  # BCQ: z ~ N(0, 1) clipped to [−0.5, 0.5]
            z = torch.randn(*s.shape[:-1], self.latent, device=s.device).clamp(-0.5, 0.5)
        return torch.tanh(self.decoder(torch.cat([s, z], -1)))

    def forward(self, s: torch.Tensor, a: torch.Tensor):
        mean, log_std = self.encoder(torch.cat([s, a], -1)).split(self.latent, -1)
        std = log_std.clamp(-4.0, 15.0).exp()
        return self.decode(s, mean + std * torch.randn_like(std)), mean, std


class VDTNAgentModule(TargetNetworksMixin, TorchRLModule, InferenceOnlyAPI):
    """Base of the per-agent modules: sizes, action scaling, the density VAEs, acting.

    ``model_config``: obs_dim, discrete, n_actions, act_dim, action_low, action_high, hidden
    (list), tn_vae (bool: build the density VAEs), tn_include_reward, vae_latent_dim, + the
    subclass's own keys.
    """

    learner_attributes: tuple = ()  # learner-only sub-networks of a subclass

    def setup(self):
        mc = self.model_config
        self.discrete = bool(mc["discrete"])
        self.obs_dim = int(mc["obs_dim"])
        self.n_actions, self.act_dim = int(mc.get("n_actions") or 0), int(mc.get("act_dim") or 0)
        self.a_dim = self.n_actions if self.discrete else self.act_dim  # width of an action feature
        self.low, self.high = float(mc.get("action_low", -1.0)), float(mc.get("action_high", 1.0))
        self.hidden = [int(h) for h in mc["hidden"]]
        # Observation normalisation (o − mean) / std, set from the agent's dataset by the algorithm when
        # ``normalize_obs`` (TD3+BC's code); identity otherwise. Buffers: saved, synced to the runners.
        self.register_buffer("obs_mean", torch.zeros(self.obs_dim))
        self.register_buffer("obs_std", torch.ones(self.obs_dim))
        self.tn_include_reward = bool(mc.get("tn_include_reward", True))
        self.has_tn_vae = bool(mc.get("tn_vae", False))
        if self.has_tn_vae:
            latent = int(mc["vae_latent_dim"])
            x1 = self.obs_dim + self.a_dim
            x2 = x1 + self.obs_dim + 1 + int(self.tn_include_reward)
            self.tn_vae_sa = DensityVAE(x1, latent, self.hidden)
            self.tn_vae_sas = DensityVAE(x2, latent, self.hidden)
        self.build_networks()

    def build_networks(self) -> None:
        raise NotImplementedError

    def get_non_inference_attributes(self) -> List[str]:
        extra = ["tn_vae_sa", "tn_vae_sas"] if self.has_tn_vae else []
        return extra + list(self.learner_attributes) + [f"target_{n}" for n in self.target_networks]

    # -- helpers ---------------------------------------------------------------------------------
    def norm(self, o: torch.Tensor) -> torch.Tensor:
        """The network input of observations ``o``: (o − obs_mean) / obs_std."""
        return (o.float() - self.obs_mean) / self.obs_std

    def set_obs_stats(self, mean, std) -> None:
        """Fix the normalisation (``normalize_obs``): the agent's dataset mean and std (+ the floor)."""
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def unit(self, a: torch.Tensor) -> torch.Tensor:
        """Box actions -> [-1, 1]."""
        return 2.0 * (a - self.low) / (self.high - self.low) - 1.0

    def action_feature(self, a: torch.Tensor) -> torch.Tensor:
        """One-hot (discrete) or the action in [-1, 1] (continuous)."""
        if self.discrete:
            return torch.nn.functional.one_hot(a.long(), self.n_actions).float()
        return self.unit(a.float())

    def tn_inputs(self, batch):
        o, o2 = self.norm(batch[V.OBS]), self.norm(batch[V.NEXT_OBS])
        a = self.action_feature(batch[V.ACTIONS])
        x1 = torch.cat([o, a], -1)
        parts = [x1] + ([batch[V.REWARD].float().unsqueeze(-1)] if self.tn_include_reward else [])
        parts += [o2, batch[V.BOOTSTRAP].float().unsqueeze(-1)]
        return x1, torch.cat(parts, -1)

    # -- training --------------------------------------------------------------------------------
    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.has_tn_vae:
            x1, x2 = self.tn_inputs(batch)
            for name, vae, x in ((V.VAE_TN_SA, self.tn_vae_sa, x1), (V.VAE_TN_SAS, self.tn_vae_sas, x2)):
                recon, mean, std = vae(x)
                out[name] = (recon, x, mean, std)
            with torch.no_grad():  # §3.4: λ_tn = ρ_N(μ¹) / ρ_N(μ²), from the latent means
                m1, m2 = out[V.VAE_TN_SA][2], out[V.VAE_TN_SAS][2]
                out[V.TN_LOG_RATIO] = 0.5 * (m2.pow(2).sum(-1) - m1.pow(2).sum(-1))
        out.update(self.forward_generative(batch))
        if V.TD_PHASE in batch:
            out.update(self.forward_td(batch))
        return out

    def forward_generative(self, batch) -> Dict[str, Any]:
        """Outputs of the behaviour models fitted in the ``fit`` phase (BCQ's μ_i / G¹)."""
        return {}

    def forward_td(self, batch) -> Dict[str, Any]:
        """Q_TAKEN, Q_TAKEN_TARGET, V_NEXT_TARGET (+ the algorithm's own terms)."""
        raise NotImplementedError

    # -- acting ----------------------------------------------------------------------------------
    def act(self, o: torch.Tensor, avail: Optional[torch.Tensor], explore: bool) -> torch.Tensor:
        raise NotImplementedError

    def _act(self, batch, explore: bool) -> Dict[str, Any]:
        o, avail, time_rank = split_env_obs(batch)
        a = self.act(self.norm(o), avail, explore)
        return {Columns.ACTIONS: a.unsqueeze(1) if time_rank else a}

    def _forward_inference(self, batch, **kwargs):
        with torch.no_grad():
            return self._act(batch, explore=False)

    def _forward_exploration(self, batch, **kwargs):
        with torch.no_grad():
            return self._act(batch, explore=True)

    def _forward(self, batch, **kwargs):
        return self._act(batch, explore=False)


# ---------------------------------------------------------------------------------------------
# Discrete
# ---------------------------------------------------------------------------------------------

class VDTNDiscreteModule(VDTNAgentModule):
    """Q_i(s, ·) (``q``, target ``target_q``). V*(s′) = Q̂_i(s′, π̂_i(s′)) with π̂_i the arg max of the
    target Q̂_i over the allowed actions (Eq. 1: "π̂_i is the policy induced by Q̂_i");
    ``model_config["double_q"]``: the arg max of the online Q_i instead (the discrete BCQ code)."""

    target_networks = ("q",)

    def build_networks(self) -> None:
        self.q = mlp(self.obs_dim, self.hidden, self.n_actions)
        self.double_q = bool(self.model_config.get("double_q", False))

    def allowed(self, o: torch.Tensor, avail: Optional[torch.Tensor]) -> torch.Tensor:
        return torch.ones(*o.shape[:-1], self.n_actions, dtype=torch.bool, device=o.device) if avail is None else avail > 0

    def forward_td(self, batch) -> Dict[str, Any]:
        o, o2, a = self.norm(batch[V.OBS]), self.norm(batch[V.NEXT_OBS]), batch[V.ACTIONS].long()
        q_all = self.q(o)
        with torch.no_grad():
            allowed = self.allowed(o2, batch.get(V.NEXT_AVAIL))
            target_next = self.target_q(o2)
            a_next = masked_argmax(self.q(o2) if self.double_q else target_next, allowed)
            v_next = target_next.gather(-1, a_next.unsqueeze(-1)).squeeze(-1)
            q_taken_target = self.target_q(o).gather(-1, a.unsqueeze(-1)).squeeze(-1)
        return {V.Q_ALL: q_all, V.Q_TAKEN: q_all.gather(-1, a.unsqueeze(-1)).squeeze(-1),
                V.Q_TAKEN_TARGET: q_taken_target, V.V_NEXT_TARGET: v_next, V.ALLOWED_NEXT: allowed}

    def act(self, o, avail, explore):
        q = self.q(o)
        allowed = self.allowed(o, avail)
        if explore:
            return torch.distributions.Categorical(logits=q.masked_fill(~allowed, -1e9)).sample()
        return masked_argmax(q, allowed)


class VDTNDiscreteCQLModule(VDTNDiscreteModule):
    """Discrete CQL: the max of the target and the greedy action over the available actions."""


class VDTNDiscreteBCQModule(VDTNDiscreteModule):
    """Discrete BCQ: + the behaviour model μ_i (``behaviour``, logits); ``model_config["bcq_threshold"]`` τ."""

    def build_networks(self) -> None:
        super().build_networks()
        self.behaviour = mlp(self.obs_dim, self.hidden, self.n_actions)
        self.threshold = float(self.model_config["bcq_threshold"])

    def allowed(self, o, avail):
        return bcq_action_filter(self.behaviour(o), avail, self.threshold)

    def forward_generative(self, batch):
        return {V.BEHAVIOUR_LOGITS: self.behaviour(self.norm(batch[V.OBS]))}


# ---------------------------------------------------------------------------------------------
# Continuous
# ---------------------------------------------------------------------------------------------

class ActionQ(nn.Module):
    """Q(s, a) = MLP([s, a]) with a in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: List[int]):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, 1)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([s, a], -1)).squeeze(-1)


class Perturbation(nn.Module):
    """BCQ's ξ: ã = clip(a + Φ·tanh(MLP([s, a])), −1, 1)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: List[int], phi: float):
        super().__init__()
        self.phi = float(phi)
        self.net = mlp(obs_dim + act_dim, hidden, act_dim)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return (a + self.phi * torch.tanh(self.net(torch.cat([s, a], -1)))).clamp(-1.0, 1.0)


class VDTNContinuousBCQModule(VDTNAgentModule):
    """BCQ: ``q`` (+ target), ``generator`` G¹ (BCQ's conditional VAE), ``perturb`` ξ (+ target);
    π_i(s) = arg max over n samples a^j ~ G¹(s) of Q_i(s, a^j + ξ(s, a^j)) (§3.4)."""

    target_networks = ("q", "perturb")

    def build_networks(self) -> None:
        mc = self.model_config
        self.num_samples = int(mc["num_sampled_actions"])
        self.q = ActionQ(self.obs_dim, self.act_dim, self.hidden)
        self.generator = ActionVAE(self.obs_dim, self.act_dim, int(mc["vae_latent_dim"]), self.hidden)
        self.perturb = Perturbation(self.obs_dim, self.act_dim, self.hidden, float(mc["perturbation_scale"]))

    def best_of_n(self, q: nn.Module, perturb: nn.Module, s: torch.Tensor):
        """(value [B], action [B, A]) of the best of n perturbed G¹ samples."""
        ss = s.unsqueeze(-2).expand(*s.shape[:-1], self.num_samples, s.shape[-1])
        with torch.no_grad():
            cand = perturb(ss, self.generator.decode(ss))
            values = q(ss, cand)
        best = values.argmax(-1)
        idx = best.unsqueeze(-1).unsqueeze(-1).expand(*best.shape, 1, cand.shape[-1])
        return values.gather(-1, best.unsqueeze(-1)).squeeze(-1), cand.gather(-2, idx).squeeze(-2)

    def forward_generative(self, batch):
        o, a = self.norm(batch[V.OBS]), self.unit(batch[V.ACTIONS].float())
        recon, mean, std = self.generator(o, a)
        return {V.VAE_GENERATOR: (recon, a, mean, std)}

    def forward_td(self, batch):
        o, o2, a = self.norm(batch[V.OBS]), self.norm(batch[V.NEXT_OBS]), self.unit(batch[V.ACTIONS].float())
        with torch.no_grad():
            v_next, _ = self.best_of_n(self.target_q, self.target_perturb, o2)
            q_taken_target = self.target_q(o, a)
            sampled = self.generator.decode(o)
        return {V.Q_TAKEN: self.q(o, a), V.Q_TAKEN_TARGET: q_taken_target, V.V_NEXT_TARGET: v_next,
                V.Q_PERTURBED: self.q(o, self.perturb(o, sampled)), V.ACTIONS_UNIT: a}

    def act(self, o, avail, explore):
        if explore:
            return self.perturb(o, self.generator.decode(o))
        return self.best_of_n(self.q, self.perturb, o)[1]


class TanhGaussianActor(nn.Module):
    """π(·|s): tanh of a Gaussian (SAC); ``sample`` returns (a in [-1, 1], log π(a|s))."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: List[int]):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def dist(self, s):
        mean, log_std = self.net(s).split(self.act_dim, -1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def sample(self, s: torch.Tensor):
        mean, std = self.dist(s)
        u = mean + std * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
        logp = logp - (2.0 * (math.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))).sum(-1)
        return a, logp

    def greedy(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dist(s)[0])


class VDTNContinuousCQLModule(VDTNAgentModule):
    """CQL(H): ``q`` (+ target) and a tanh-Gaussian ``actor``; the penalty's logsumexp over n uniform
    and n policy actions, importance-weighted by their densities (CQL's code)."""

    target_networks = ("q",)

    def build_networks(self) -> None:
        self.num_samples = int(self.model_config["num_sampled_actions"])
        self.q = ActionQ(self.obs_dim, self.act_dim, self.hidden)
        self.actor = TanhGaussianActor(self.obs_dim, self.act_dim, self.hidden)

    def forward_td(self, batch):
        o, o2, a = self.norm(batch[V.OBS]), self.norm(batch[V.NEXT_OBS]), self.unit(batch[V.ACTIONS].float())
        B, n, A = o.shape[0], self.num_samples, self.act_dim
        with torch.no_grad():
            a2, _ = self.actor.sample(o2)
            v_next = self.target_q(o2, a2)
            q_taken_target = self.target_q(o, a)
            os_ = o.unsqueeze(1).expand(B, n, o.shape[-1])
            uni = torch.rand(B, n, A, device=o.device) * 2.0 - 1.0
            pi_a, pi_logp = self.actor.sample(os_)
        # CQL(H), importance sampled: logsumexp_j [Q(s, u_j) − log U(u_j)] ∪ [Q(s, a_j) − log π(a_j|s)] − log 2n
        q_uni = self.q(os_, uni) - A * math.log(0.5)
        q_pi = self.q(os_, pi_a) - pi_logp
        lse = torch.logsumexp(torch.cat([q_uni, q_pi], 1), 1) - math.log(2 * n)
        new_a, new_logp = self.actor.sample(o)
        return {V.Q_TAKEN: self.q(o, a), V.Q_TAKEN_TARGET: q_taken_target, V.V_NEXT_TARGET: v_next,
                V.CQL_LOGSUMEXP: lse, V.Q_PI: self.q(o, new_a), V.PI_LOGP: new_logp}

    def act(self, o, avail, explore):
        return self.actor.sample(o)[0] if explore else self.actor.greedy(o)


class VDTNTD3BCModule(VDTNAgentModule):
    """TD3+BC: twin critics ``q1``/``q2`` and a deterministic tanh ``actor`` (all with targets)."""

    target_networks = ("q1", "q2", "actor")
    learner_attributes = ("q1", "q2")

    def build_networks(self) -> None:
        self.q1 = ActionQ(self.obs_dim, self.act_dim, self.hidden)
        self.q2 = ActionQ(self.obs_dim, self.act_dim, self.hidden)
        self.actor = mlp(self.obs_dim, self.hidden, self.act_dim, out_act=nn.Tanh)
        self.policy_noise = float(self.model_config["policy_noise"])
        self.noise_clip = float(self.model_config["noise_clip"])

    def forward_td(self, batch):
        o, o2, a = self.norm(batch[V.OBS]), self.norm(batch[V.NEXT_OBS]), self.unit(batch[V.ACTIONS].float())
        with torch.no_grad():
            pi2 = self.target_actor(o2)
            noise = (torch.randn_like(pi2) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            a2 = (pi2 + noise).clamp(-1.0, 1.0)  # TD3's target policy smoothing
            v_next = torch.min(self.target_q1(o2, a2), self.target_q2(o2, a2))
            q_taken_target = torch.min(self.target_q1(o, a), self.target_q2(o, a))
        pi = self.actor(o)
        return {V.Q_TAKEN: self.q1(o, a), V.Q_TAKEN_2: self.q2(o, a), V.Q_TAKEN_TARGET: q_taken_target,
                V.V_NEXT_TARGET: v_next, V.PI_ACTION: pi, V.Q_PI: self.q1(o, pi), V.ACTIONS_UNIT: a}

    def act(self, o, avail, explore):
        a = self.actor(o)
        if explore:
            a = (a + 0.1 * torch.randn_like(a)).clamp(-1.0, 1.0)
        return a
