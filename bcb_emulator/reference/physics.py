"""Column physics of the reference model: emission, boundary-layer mixing, convection, removal.

One compiled kernel visits every column once per step, in this order:

1. **Emission** of the step's biomass-burning mass, spread over the layers below the boundary
   layer top in proportion to their air mass (ModelE's convention), with a share injected into
   the two layers above the boundary layer (pyro-convection; larger for boreal fires).
2. **Boundary-layer mixing**: mixing ratios of the layers inside the boundary layer relax to
   their mass-weighted mean with time scale ``tau_mix``; tracer mass is conserved exactly.
3. **Convection**: a bulk updraft with mass flux ``Mu`` at layer tops entrains air where ``Mu``
   grows, detrains where it shrinks, and the environment subsides with ``Mu`` to compensate
   (upstream). The updraft mixing ratio is followed from the bottom up, and inside precipitating
   cloud a fraction of it is scavenged (wet deposition). Sub-stepped so no layer loses more
   than ``MAX_OUTFLOW_FRACTION`` of its air per sub-step: exact, mass-conserving, positive.
4. **Dry deposition** from layer 1 and **large-scale wet scavenging** in every layer, each
   applied as ``M · exp(−k Δt)`` — never an explicit Euler step.

Every change of tracer mass is accounted into the budget terms it belongs to, from the same
numbers that change the state, so that the global budget closes to round-off.
Moments (sub-grid distribution) are scaled down with the tracer mass where it shrinks.
"""

from __future__ import annotations

import numba
import numpy as np

from bcb_emulator.reference.qus import MAX_OUTFLOW_FRACTION, N_MOMENTS

#: Indices of the budget terms returned by :func:`column_physics` (kg per step).
EMITTED, DRY_DEPOSITED, WET_LARGE_SCALE, WET_CONVECTIVE = range(4)
N_BUDGET = 4


@numba.njit(parallel=True, cache=True)
def column_physics(
    s, mom, mass, z_edges, emission, free_share, pblht, mu_top, conv_scav, dry_keep, wet_keep, dt,
    tau_mix,
):  # fmt: skip
    """Applies one step of column physics in place and returns the budget terms.

    Args:
        s: ``(nl, jm, im)`` tracer mass, kg. mom: ``(9, nl, jm, im)`` moments, kg.
        mass: ``(nl, jm, im)`` air mass, kg.
        z_edges: ``(nl + 1, jm, im)`` height of layer edges above the surface, m.
        emission: ``(jm, im)`` tracer mass emitted during the step, kg.
        free_share: ``(jm, im)`` share of the emission injected above the boundary layer.
        pblht: ``(jm, im)`` boundary-layer height, m.
        mu_top: ``(nl, jm, im)`` convective updraft air mass through the top of each layer
            during the step, kg (0 at the lid).
        conv_scav: ``(nl, jm, im)`` fraction of the updraft's tracer scavenged in each layer.
        dry_keep: ``(jm, im)`` ``exp(−k Δt)`` of dry deposition from layer 1.
        wet_keep: ``(nl, jm, im)`` ``exp(−k Δt)`` of large-scale wet scavenging.
        dt: step, s. tau_mix: boundary-layer mixing time scale, s.

    Returns:
        ``(N_BUDGET, jm)`` budget terms per row, kg (summed over longitudes and layers).
    """
    nl, jm, im = s.shape
    budget = np.zeros((N_BUDGET, jm))
    relax = 1.0 - np.exp(-dt / tau_mix)
    for j in numba.prange(jm):
        weights = np.empty(nl)
        s0 = np.empty(nl)
        q = np.empty(nl)
        qu = np.empty(nl)
        for i in range(im):
            for k in range(nl):
                s0[k] = s[k, j, i]
            # 1. Emission, by air mass below the boundary-layer top, a share above it.
            top = pblht[j, i]
            kpbl = 0
            total_w = 0.0
            for k in range(nl):
                below = min(
                    max((top - z_edges[k, j, i]) / (z_edges[k + 1, j, i] - z_edges[k, j, i]), 0.0),
                    1.0,
                )
                if k == 0:
                    below = max(below, 1.0)  # the lowest layer is always in the boundary layer
                weights[k] = below * mass[k, j, i]
                total_w += weights[k]
                if below >= 0.5:
                    kpbl = k
            e = emission[j, i]
            if e > 0.0:
                share = free_share[j, i]
                for k in range(nl):
                    s[k, j, i] += (1.0 - share) * e * weights[k] / total_w
                ka = min(kpbl + 1, nl - 1)
                kb = min(kpbl + 2, nl - 1)
                if ka == kb:
                    s[ka, j, i] += share * e
                else:
                    free_w = mass[ka, j, i] + mass[kb, j, i]
                    s[ka, j, i] += share * e * mass[ka, j, i] / free_w
                    s[kb, j, i] += share * e * mass[kb, j, i] / free_w
                budget[0, j] += e
            # 2. Boundary-layer mixing towards the mass-weighted mean mixing ratio.
            if kpbl > 0:
                sm = 0.0
                mm = 0.0
                for k in range(kpbl + 1):
                    sm += s[k, j, i]
                    mm += mass[k, j, i]
                qbar = sm / mm
                moved = 0.0
                for k in range(kpbl):
                    delta = relax * (qbar * mass[k, j, i] - s[k, j, i])
                    s[k, j, i] += delta
                    moved += delta
                s[kpbl, j, i] -= moved  # the last layer takes the balance: exact conservation
                if s[kpbl, j, i] < 0.0:
                    s[kpbl, j, i] = 0.0  # cannot happen beyond round-off; keep positivity
            # 3. Convection (bulk updraft, compensating subsidence, in-cloud scavenging).
            worst = 0.0
            for k in range(nl):
                below = mu_top[k - 1, j, i] if k > 0 else 0.0
                entrain = max(mu_top[k, j, i] - below, 0.0)
                worst = max(worst, (entrain + below) / mass[k, j, i])
            if worst > 0.0:
                n_sub = int(np.ceil(worst / MAX_OUTFLOW_FRACTION))
                for _ in range(n_sub):
                    for k in range(nl):
                        q[k] = s[k, j, i] / mass[k, j, i]
                    flux_u = 0.0  # updraft tracer flux entering layer k from below, kg
                    scav = 0.0
                    for k in range(nl):
                        below = mu_top[k - 1, j, i] / n_sub if k > 0 else 0.0
                        above = mu_top[k, j, i] / n_sub
                        entrain = max(above - below, 0.0)
                        detrain = max(below - above, 0.0)
                        # Updraft: mix in entrained air, scavenge, pass on or detrain.
                        tracer_u = flux_u + entrain * q[k]
                        air_u = below + entrain
                        removed = conv_scav[k, j, i] * tracer_u
                        tracer_u -= removed
                        scav += removed
                        qu[k] = tracer_u / air_u if air_u > 0.0 else 0.0
                        flux_u = qu[k] * above
                        sub_in = above * q[k + 1] if k + 1 < nl else 0.0
                        sub_out = below * q[k]
                        s[k, j, i] += -entrain * q[k] + detrain * qu[k] + sub_in - sub_out
                        if s[k, j, i] < 0.0:
                            s[k, j, i] = 0.0  # round-off only: outflow <= 75% of the layer
                    budget[3, j] += scav
            # 4. Dry deposition (layer 1) and large-scale wet scavenging, as exponentials.
            before = s[0, j, i]
            s[0, j, i] = before * dry_keep[j, i]
            budget[1, j] += before - s[0, j, i]
            for k in range(nl):
                before = s[k, j, i]
                s[k, j, i] = before * wet_keep[k, j, i]
                budget[2, j] += before - s[k, j, i]
            # Moments shrink with the tracer mass where it fell.
            for k in range(nl):
                if s[k, j, i] < s0[k]:
                    ratio = s[k, j, i] / s0[k]
                    for n in range(N_MOMENTS):
                        mom[n, k, j, i] *= ratio
    return budget
