"""Draw one frame of a SMAC episode to a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from typing import Optional

from rllib_sit.envs.smac.maps import MAP_SIZE

_TEAM_COLORS = ("tab:blue", "tab:red")


def render_png(env, path: str, title: Optional[str] = None) -> str:
    """Pathing grid (grey = blocked), units as circles at their collision radius with HP (green)
    and shield (cyan) bars, agent/enemy labels, and a line from each unit to its current target."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    b = env.battle
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    ax.imshow(~b.grid.T, origin="lower", cmap="Greys", vmin=0, vmax=3,
              extent=(0, MAP_SIZE, 0, MAP_SIZE), interpolation="nearest")
    labels = list(env.info.agents) + [f"e{k}" for k in range(b.n_en)]
    T = b._T
    for u in range(b.n):
        if not b.alive[u]:
            continue
        x, y = b.pos[u]
        if T[u] >= 0 and b.alive[T[u]]:
            tx, ty = b.pos[T[u]]
            ax.plot([x, tx], [y, ty], color=_TEAM_COLORS[b.team[u]], lw=0.6, alpha=0.6)
        ax.add_patch(Circle((x, y), b.radius[u], color=_TEAM_COLORS[b.team[u]], alpha=0.85))
        w = 1.4
        ax.add_patch(matplotlib.patches.Rectangle((x - w / 2, y + b.radius[u] + 0.15), w * b.hp[u] / b.hp_max[u], 0.18, color="green"))
        if b.sh_max[u] > 0:
            ax.add_patch(matplotlib.patches.Rectangle((x - w / 2, y + b.radius[u] + 0.35), w * b.sh[u] / b.sh_max[u], 0.18, color="deepskyblue"))
        ax.text(x, y - b.radius[u] - 0.5, labels[u], ha="center", va="top", fontsize=6)
    ax.set_xlim(0, MAP_SIZE)
    ax.set_ylim(0, MAP_SIZE)
    ax.set_aspect("equal")
    steps = getattr(env, "episode_steps", 0)
    ax.set_title(title or f"{env.info.env_id}  step {steps}  (loop {int(b.loop)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
