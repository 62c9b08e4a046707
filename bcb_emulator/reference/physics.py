"""Column physics of the reference model: emission, boundary-layer mixing, convection, removal.

Every column goes through these processes once per step, in this order:

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

Layout: the fields are ``(nl, jm, im)`` with the longitude ``i`` contiguous. The kernels work
on a block of a few latitude rows at a time, with the loop over levels outside and the loop
over longitudes inside, so that the inner loops run over contiguous memory and vectorize;
whatever is carried up a column (the updraft, the boundary-layer balance) lives in work arrays
with one entry per column. A level of a block is one contiguous run of memory, long enough for
the hardware to stream it in from main memory. A row's columns that need fewer convective
sub-steps than the row's most demanding one keep their state unchanged, bit for bit, in the
extra sub-steps. Each row's result, budget included, depends neither on the other rows of its
block nor on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np

from bcb_emulator.reference.qus import _NOALIAS, MAX_OUTFLOW_FRACTION, N_MOMENTS

#: Indices of the budget terms returned by :func:`column_physics` (kg per step).
EMITTED, DRY_DEPOSITED, WET_LARGE_SCALE, WET_CONVECTIVE = range(4)
N_BUDGET = 4

#: Latitude rows per block. Short runs of memory (one row of a level) are fetched at the
#: latency of main memory, not at its bandwidth; four rows already stream nearly as well as a
#: whole field, and keep the block's work arrays in the core's cache.
BLOCK_ROWS = 4

#: Options of the block kernels. ``noalias`` (LLVM may assume that no two array arguments
#: overlap, so it vectorizes without run-time overlap checks) is valid because work arrays are
#: separate allocations and ``s``, ``mom`` and ``budget`` are the only others written. NumPy's
#: error model leaves divisions without zero checks. No fast-math: the results are those of the
#: column-by-column formulation, bit for bit (budget sums aside, which are summed by column).
_BLOCK_KERNEL = dict(cache=True, error_model="numpy", **_NOALIAS)


def column_physics(
    s, mom, mass, z_edges, emission, free_share, pblht, mu_top, conv_scav, dry_keep, wet_keep, dt,
    tau_mix,
):  # fmt: skip
    """Applies one step of column physics in place and returns the budget terms.

    Args:
        s: ``(nl, jm, im)`` tracer mass, kg. mom: ``(9, nl, jm, im)`` moments, kg. Both are
            updated in place and must not share memory with any other argument.
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
    return _column_physics(
        s, mom, mass, z_edges, emission, free_share, pblht, mu_top, conv_scav, dry_keep, wet_keep,
        dt, tau_mix, numba.get_num_threads(),
    )  # fmt: skip


@numba.njit(parallel=True, cache=True)
def _column_physics(
    s, mom, mass, z_edges, emission, free_share, pblht, mu_top, conv_scav, dry_keep, wet_keep, dt,
    tau_mix, threads,
):  # fmt: skip
    """Kernel of :func:`column_physics`; the rows are split into ``threads`` chunks.

    Each chunk is a contiguous range of rows (threads sharing the cache lines where their
    ranges meet would slow each other down), done block by block with the chunk's own work
    arrays (allocating them per block would cost a tenth of the kernel's time).
    """
    nl, jm, im = s.shape
    budget = np.zeros((N_BUDGET, jm))
    relax = 1.0 - np.exp(-dt / tau_mix)
    n_chunks = max(min(threads, jm), 1)
    for chunk in numba.prange(n_chunks):
        # Work arrays, each a separate allocation (the block kernels rely on it). The first
        # index of a block's rows is the row's place in the block.
        s0 = np.empty((nl, BLOCK_ROWS, im))
        layered = np.empty((nl, BLOCK_ROWS, im))
        q = np.zeros((nl + 1, BLOCK_ROWS, im))  # level nl: no tracer above the lid
        kpbl = np.empty((BLOCK_ROWS, im), np.int64)
        most = np.empty(BLOCK_ROWS, np.int64)
        w1 = np.empty((BLOCK_ROWS, im))
        w2 = np.empty((BLOCK_ROWS, im))
        w3 = np.empty((BLOCK_ROWS, im))
        w4 = np.empty((BLOCK_ROWS, im))
        w5 = np.empty((BLOCK_ROWS, im))
        w6 = np.empty((BLOCK_ROWS, im))
        end = (chunk + 1) * jm // n_chunks
        for first in range(chunk * jm // n_chunks, end, BLOCK_ROWS):
            last = min(first + BLOCK_ROWS, end)
            _emit_and_mix(
                first, last, s, mass, z_edges, emission, free_share, pblht, relax, budget, s0,
                layered, kpbl, w1, w2,
            )  # fmt: skip
            _convect(
                first, last, s, mass, mu_top, conv_scav, budget, q, most, w1, w2, w3, w4, w5, w6
            )
            _remove(first, last, s, mom, dry_keep, wet_keep, budget, s0, layered, w1, w2)
    return budget


@numba.njit(**_BLOCK_KERNEL)
def _emit_and_mix(
    first, last, s, mass, z_edges, emission, free_share, pblht, relax, budget, s0, weight, kpbl,
    total, moved,
):  # fmt: skip
    """Emission and boundary-layer mixing in rows ``first ≤ j < last`` (steps 1 and 2).

    Args:
        first, last: the block's rows. s, mass, z_edges, emission, free_share, pblht: as in
            :func:`column_physics`. budget: ``(N_BUDGET, jm)``; receives the emitted mass.
        relax: fraction of the way to the mean mixing ratio covered in one step.
        s0: ``(nl, BLOCK_ROWS, im)`` work array; receives the tracer mass before the step.
        weight: ``(nl, BLOCK_ROWS, im)`` work array (emission weights).
        kpbl: ``(BLOCK_ROWS, im)`` int work array; receives the top layer of the boundary layer.
        total, moved: ``(BLOCK_ROWS, im)`` work arrays.
    """
    nl, _, im = s.shape
    for k in range(nl):
        for j in range(first, last):
            b = j - first
            for i in range(im):
                s0[k, b, i] = s[k, j, i]
    # Weights: air mass below the boundary-layer top; the top layer is the last one at least
    # half inside (the lowest layer always counts as inside). Weights vanish above the lowest
    # layer that is outside the boundary layer in every column of the block (k_clear); the
    # emission reaches up to two layers above the top layer, at most k_clear + 1.
    for j in range(first, last):
        b = j - first
        for i in range(im):
            total[b, i] = 0.0
            kpbl[b, i] = 0
    k_clear = nl
    for k in range(nl):
        if k > k_clear + 1:
            break
        inside = 0
        for j in range(first, last):
            b = j - first
            for i in range(im):
                bottom = z_edges[k, j, i]
                below = (pblht[j, i] - bottom) / (z_edges[k + 1, j, i] - bottom)
                below = min(max(below, 0.0), 1.0)
                if k == 0:
                    below = max(below, 1.0)
                w = below * mass[k, j, i]
                weight[k, b, i] = w
                total[b, i] += w
                kpbl[b, i] = k if below >= 0.5 else kpbl[b, i]
                inside += below > 0.0
        if inside == 0:
            k_clear = min(k_clear, k)
    k_max = 0
    emitting = 0
    for j in range(first, last):
        b = j - first
        for i in range(im):
            k_max = max(k_max, kpbl[b, i])
            emitting += emission[j, i] > 0.0
        emitted = 0.0
        for i in range(im):
            e = emission[j, i]
            emitted += e if e > 0.0 else 0.0
        budget[EMITTED, j] = emitted
    # 1. Emission, by air mass below the boundary-layer top, a share in the two layers above.
    # Higher layers receive nothing.
    if emitting > 0:
        for k in range(min(k_max + 3, nl)):
            k_up = min(k + 1, nl - 1)
            k_down = max(k - 1, 0)
            for j in range(first, last):
                b = j - first
                for i in range(im):
                    e = emission[j, i]
                    share = free_share[j, i]
                    old = s[k, j, i]
                    new = old + (1.0 - share) * e * weight[k, b, i] / total[b, i]
                    ka = min(kpbl[b, i] + 1, nl - 1)
                    kb = min(kpbl[b, i] + 2, nl - 1)
                    # Air mass of layers ka and kb (kb = ka + 1 where they differ).
                    m = mass[k, j, i]
                    m_up = mass[k_up, j, i]
                    m_down = mass[k_down, j, i]
                    free_w = m + m_up if k == ka else m_down + m
                    free = share * e if ka == kb else share * e * m / free_w
                    new = new + free if k == ka or k == kb else new
                    s[k, j, i] = new if e > 0.0 else old
    # 2. Boundary-layer mixing towards the mass-weighted mean mixing ratio. `total` becomes
    # the tracer mass inside the boundary layer, then its mean mixing ratio; `moved` the
    # air mass, then the tracer moved so far into the layers below the top one.
    if k_max > 0:
        for j in range(first, last):
            b = j - first
            for i in range(im):
                total[b, i] = 0.0
                moved[b, i] = 0.0
        for k in range(k_max + 1):
            for j in range(first, last):
                b = j - first
                for i in range(im):
                    inside = k <= kpbl[b, i]
                    tracer = s[k, j, i]
                    air = mass[k, j, i]
                    total[b, i] = total[b, i] + tracer if inside else total[b, i]
                    moved[b, i] = moved[b, i] + air if inside else moved[b, i]
        for j in range(first, last):
            b = j - first
            for i in range(im):
                total[b, i] = total[b, i] / moved[b, i]
                moved[b, i] = 0.0
        for k in range(k_max + 1):
            for j in range(first, last):
                b = j - first
                for i in range(im):
                    top = kpbl[b, i]
                    old = s[k, j, i]
                    delta = relax * (total[b, i] * mass[k, j, i] - old)
                    # The top layer takes the balance (exact conservation); it cannot become
                    # negative beyond round-off, which is cut to keep positivity.
                    balance = old - moved[b, i]
                    balance = 0.0 if balance < 0.0 else balance
                    if k < top:
                        new = old + delta
                    elif k == top:
                        new = balance
                    else:
                        new = old
                    s[k, j, i] = new
                    moved[b, i] = moved[b, i] + delta if k < top else moved[b, i]


@numba.njit(**_BLOCK_KERNEL)
def _convect(
    first, last, s, mass, mu_top, conv_scav, budget, q, most, n_sub, flux_u, below, scav_step,
    scav, worst,
):  # fmt: skip
    """Convection in rows ``first ≤ j < last`` (step 3), sub-stepped column by column.

    Each row advances through as many sub-steps as its most demanding column needs; in its
    extra sub-steps, a column stays exactly as it was.

    Args:
        first, last: the block's rows. s, mass, mu_top, conv_scav: as in
            :func:`column_physics`. budget: ``(N_BUDGET, jm)``; receives the scavenged mass.
        q: ``(nl + 1, BLOCK_ROWS, im)`` work array, zero at level ``nl`` (mixing ratios).
        most: ``(BLOCK_ROWS,)`` int work array (sub-steps of each row).
        n_sub, flux_u, below, scav_step, scav, worst: ``(BLOCK_ROWS, im)`` work arrays.
    """
    nl, _, im = s.shape
    # Largest fraction of a layer's air leaving it in the step: entrainment into the updraft
    # plus subsidence into the layer below.
    for j in range(first, last):
        b = j - first
        for i in range(im):
            worst[b, i] = 0.0
    for k in range(nl):
        k_down = max(k - 1, 0)
        for j in range(first, last):
            b = j - first
            for i in range(im):
                from_below = mu_top[k_down, j, i] if k > 0 else 0.0
                entrain = max(mu_top[k, j, i] - from_below, 0.0)
                worst[b, i] = max(worst[b, i], (entrain + from_below) / mass[k, j, i])
    most_block = 0
    for j in range(first, last):
        b = j - first
        most[b] = 0
        for i in range(im):
            n = int(np.ceil(worst[b, i] / MAX_OUTFLOW_FRACTION)) if worst[b, i] > 0.0 else 0
            n_sub[b, i] = n
            scav[b, i] = 0.0
            most[b] = max(most[b], n)
        most_block = max(most_block, most[b])
    for step in range(most_block):
        for k in range(nl):
            for j in range(first, last):
                b = j - first
                if step < most[b]:
                    for i in range(im):
                        q[k, b, i] = s[k, j, i] / mass[k, j, i]
        for j in range(first, last):
            b = j - first
            for i in range(im):
                flux_u[b, i] = 0.0  # updraft tracer flux entering layer k from below, kg
                below[b, i] = 0.0  # updraft air entering layer k from below, kg
                scav_step[b, i] = 0.0
        _updraft(first, last, step, s, mu_top, conv_scav, q, most, n_sub, flux_u, below, scav_step)
        for j in range(first, last):
            b = j - first
            for i in range(im):
                scav[b, i] = scav[b, i] + scav_step[b, i] if step < n_sub[b, i] else scav[b, i]
    for j in range(first, last):
        b = j - first
        total = 0.0
        for i in range(im):
            total += scav[b, i]
        budget[WET_CONVECTIVE, j] = total


@numba.njit(**_BLOCK_KERNEL)
def _updraft(first, last, step, s, mu_top, conv_scav, q, most, n_sub, flux_u, below, scav_step):
    """Sub-step ``step`` of convection in rows ``first ≤ j < last``, from the bottom up.

    Args:
        first, last: the block's rows. step: the sub-step. s, mu_top, conv_scav: as in
            :func:`column_physics`. q: ``(nl + 1, BLOCK_ROWS, im)`` mixing ratios at the
            sub-step's start. most: ``(BLOCK_ROWS,)`` sub-steps of each row.
        n_sub: ``(BLOCK_ROWS, im)`` sub-steps of each column.
        flux_u, below, scav_step: ``(BLOCK_ROWS, im)``, zero on entry: updraft tracer and air
            entering the layer from below, tracer scavenged in the sub-step (kg).
    """
    nl, _, im = s.shape
    for k in range(nl):
        for j in range(first, last):
            b = j - first
            if step < most[b]:
                split = most[b] > 1  # x / 1 = x: single sub-steps need no division
                for i in range(im):
                    active = step < n_sub[b, i]
                    from_below = below[b, i]
                    mu = mu_top[k, j, i]
                    above = mu / max(n_sub[b, i], 1.0) if split else mu
                    entrain = max(above - from_below, 0.0)
                    detrain = max(from_below - above, 0.0)
                    # Updraft: mix in entrained air, scavenge, pass on or detrain.
                    q_k = q[k, b, i]
                    tracer_u = flux_u[b, i] + entrain * q_k
                    air_u = from_below + entrain
                    removed = conv_scav[k, j, i] * tracer_u
                    tracer_u -= removed
                    scav_step[b, i] += removed
                    q_u = tracer_u / air_u if air_u > 0.0 else 0.0
                    flux_u[b, i] = q_u * above
                    below[b, i] = above
                    # Environment: gives up entrained air, receives detrained air, subsides.
                    sub_in = above * q[k + 1, b, i]
                    sub_out = from_below * q_k
                    old = s[k, j, i]
                    new = old + (-entrain * q_k + detrain * q_u + sub_in - sub_out)
                    new = 0.0 if new < 0.0 else new  # round-off only: outflow <= 75% of a layer
                    s[k, j, i] = new if active else old


@numba.njit(**_BLOCK_KERNEL)
def _remove(first, last, s, mom, dry_keep, wet_keep, budget, s0, ratio, dry, wet):
    """Dry deposition and large-scale wet scavenging in rows ``first ≤ j < last`` (step 4).

    The moments shrink with the tracer mass where it fell.

    Args:
        first, last: the block's rows. s, mom, dry_keep, wet_keep: as in
            :func:`column_physics`. budget: ``(N_BUDGET, jm)``; receives the removed masses.
        s0: ``(nl, BLOCK_ROWS, im)`` tracer mass before the step.
        ratio: ``(nl, BLOCK_ROWS, im)`` work array (moment scaling).
        dry, wet: ``(BLOCK_ROWS, im)`` work arrays.
    """
    nl, _, im = s.shape
    for j in range(first, last):
        b = j - first
        for i in range(im):
            before = s[0, j, i]
            after = before * dry_keep[j, i]
            s[0, j, i] = after
            dry[b, i] = before - after
            wet[b, i] = 0.0
    for k in range(nl):
        for j in range(first, last):
            b = j - first
            for i in range(im):
                before = s[k, j, i]
                after = before * wet_keep[k, j, i]
                s[k, j, i] = after
                wet[b, i] += before - after
                ratio[k, b, i] = after / s0[k, b, i] if after < s0[k, b, i] else 1.0  # x · 1 = x
    for k in range(nl):
        for n in range(N_MOMENTS):
            for j in range(first, last):
                b = j - first
                for i in range(im):
                    mom[n, k, j, i] *= ratio[k, b, i]
    for j in range(first, last):
        b = j - first
        dry_total = 0.0
        wet_total = 0.0
        for i in range(im):
            dry_total += dry[b, i]
            wet_total += wet[b, i]
        budget[DRY_DEPOSITED, j] = dry_total
        budget[WET_LARGE_SCALE, j] = wet_total
