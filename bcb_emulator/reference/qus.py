"""Quadratic Upstream Scheme (QUS): Prather (1986) second-order-moment advection, as in ModelE.

Each cell carries its air mass ``m`` (kg), its tracer mass ``s`` (kg) and nine moments of the
tracer distribution inside the cell (kg): first moments x, y, z, second moments xx, yy, zz and
the cross moments xy, yz, zx. A 1-D sweep moves air mass and tracer with the *same* fluxes, so a
uniform mixing ratio ``s / m`` stays uniform whatever the divergence of the sweep, and the tracer
total changes only by round-off. The sub-grid distribution is re-centred on the air remaining
in, and arriving into, each cell (Prather 1986, eqs. 12–16, in the mass-coordinate form of
ModelE's ``adv1d``). A positivity limiter (Russell's ``limitq``) adjusts the along-sweep moments
so that no part of a cell — the air leaving left, staying, leaving right — holds negative
tracer; hence fluxes and cell contents are never negative.

Geometry: arrays are ``(n_layers, jm, im)``, layer 0 at the surface, row 0 the south polar cap.
Mass fluxes are per step (kg): ``U[k, j, i]`` through the east face of cell ``(j, i)``,
``V[k, j, i]`` through the north face of row ``j`` (``j < jm − 1``), ``W[k, j, i]`` through the
top of layer ``k`` (``k < n_layers − 1``), positive eastward, northward, upward. The polar caps
are single cells stored as ``im`` equal shares; the y-sweep gathers each cap, exchanges with
all ``im`` adjacent cells at once, and shares the result out again. The x-sweep sub-cycles row
by row where the Courant number demands it (each sub-step leaves at least a quarter of every
cell's air in place), as ModelE does near the poles; the z-sweep sub-cycles column by column.

References:
    Prather, M. J. (1986), Numerical advection by conservation of second-order moments,
    J. Geophys. Res., 91(D6), 6671–6681.
    Russell, G. L., and J. A. Lerner (1981), A new finite-differencing scheme for the tracer
    transport equation, J. Appl. Meteorol., 20, 1483–1498.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

#: Moment indices in the (9, n_layers, jm, im) moment array.
MX, MY, MZ, MXX, MYY, MZZ, MXY, MYZ, MZX = range(9)
N_MOMENTS = 9
#: For a sweep along direction a with cross directions b, c, the local moment order is
#: (a, b, c, aa, bb, cc, ab, bc, ca); these map local to global indices.
ORDER_X = np.array([MX, MY, MZ, MXX, MYY, MZZ, MXY, MYZ, MZX])
ORDER_Y = np.array([MY, MX, MZ, MYY, MXX, MZZ, MXY, MZX, MYZ])
ORDER_Z = np.array([MZ, MY, MX, MZZ, MYY, MXX, MYZ, MXY, MZX])
_A, _B, _C, _AA, _BB, _CC, _AB, _BC, _CA = range(9)
#: Largest fraction of a cell's air one sub-step may remove (ModelE keeps at least a quarter).
MAX_OUTFLOW_FRACTION = 0.75
#: Limit on sub-steps of one sweep; beyond it the time step is too long for the winds.
MAX_SUBSTEPS = 64

#: Floating-point contractions allowed in the kernels (no assumptions about NaN or infinity).
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def _noalias_option() -> dict:
    """``{"noalias": True}`` where this numba accepts it, else ``{}``.

    The tile kernels read and write a dozen arrays; without knowing that they never overlap,
    LLVM would need more run-time overlap checks than it allows and leaves the loops scalar.
    numba has the ``noalias`` flag (it marks array arguments ``noalias`` in LLVM) but does not
    expose it as a ``@njit`` option, so it is registered here. Only kernels whose array
    arguments are distinct allocations use it (the per-thread work tiles). On a numba without
    the flag the kernels compile unchanged, about 2.5× slower.
    """
    try:
        from numba.core import cpu, options

        if not hasattr(cpu.CPUTargetOptions, "noalias"):
            cpu.CPUTargetOptions.noalias = options.TargetOptions.Mapping("noalias")
        numba.njit(noalias=True)(lambda: None)()
    except Exception:  # noqa: BLE001 - any failure means: compile without the flag
        return {}
    return {"noalias": True}


_NOALIAS = _noalias_option()


@numba.njit(cache=True)
def _limit(anm1, an, fnm1, fn, sn, sx, sxx):
    """Positivity limiter of one cell (Russell's ``limitq``).

    Args:
        anm1, an: signed fractions of the upstream cell's air crossing the left/right faces
            (``anm1 < 0``: air leaves this cell to the left; ``an > 0``: to the right).
        fnm1, fn: tracer fluxes through the left/right faces (positive rightward).
        sn, sx, sxx: tracer mass and along-sweep moments of this cell.

    Returns:
        ``(fnm1, fn, sx, sxx)`` adjusted so that the tracer leaving through each face and the
        tracer staying are all non-negative.
    """
    if anm1 >= 0.0 and an <= 0.0:  # no air leaves
        return fnm1, fn, sx, sxx
    if anm1 < 0.0 and an > 0.0:  # air leaves through both faces
        sl = -fnm1
        sr = fn
        sc = sn - sl - sr
        if sl >= 0.0 and sr >= 0.0 and sc >= 0.0:
            return fnm1, fn, sx, sxx
        frl = anm1
        frl1 = frl + 1.0
        frr = an
        frr1 = frr - 1.0
        if sl >= 0.0 and sr >= 0.0:  # only the staying part is negative
            gamma = 1.0 + (frl - frr)
            g13ab = gamma * gamma - 1.0 + 3.0 * (frl + frr) ** 2
            denom = gamma * (12.0 * (frl + frr) ** 2 + 5.0 * g13ab * g13ab)
            sxx = sxx - sc * 10.0 * g13ab / denom
            sx = sx + sc * 12.0 * (frl + frr) / denom
            sl = -frl * (sn - frl1 * (sx - (frl + frl1) * sxx))
            sr = sn - sl
        elif sr >= 0.0:  # only the left part is negative
            sxx = sxx + sl * (frl + frl1) / (frl * frl1 * (0.6 + (frl + frl1) ** 2))
            sx = sn / frl1 + (frl + frl1) * sxx
            sr = frr * (sn - frr1 * (sx - (frr + frr1) * sxx))
            sl = 0.0
        elif sl >= 0.0:  # only the right part is negative
            sxx = sxx - sr * (frr + frr1) / (frr * frr1 * (0.6 + (frr + frr1) ** 2))
            sx = sn / frr1 + (frr + frr1) * sxx
            sl = -frl * (sn - frl1 * (sx - (frl + frl1) * sxx))
            sr = 0.0
        sc = sn - sl - sr
        # Two parts non-positive (possibly after the one-part fixes above).
        if sl <= 0.0 and sr <= 0.0:
            gamma = 1.0 + (frl - frr)
            sxx = sn * (1.0 + gamma) / (2.0 * gamma * frl1 * frr1)
            sx = sn * (frl + frr) * (1.0 + 2.0 * gamma) / (2.0 * gamma * frl1 * frr1)
            sl = 0.0
            sr = 0.0
        elif sl <= 0.0 and sc <= 0.0:
            sxx = sn / (2.0 * frr * frl1)
            sx = sn * (frl + frr + 0.5) / (frr * frl1)
            sl = 0.0
            sr = sn
        elif sr <= 0.0 and sc <= 0.0:
            sxx = sn / (2.0 * frl * frr1)
            sx = sn * (frl + frr - 0.5) / (frl * frr1)
            sl = sn
            sr = 0.0
        return -sl, sr, sx, sxx
    # Air leaves through one face only.
    if an > 0.0:
        fr = an
        sd = fn
        fsign = -1.0
    else:
        fr = anm1
        sd = -fnm1
        fsign = 1.0
    su = sn - sd
    if sd >= 0.0 and su >= 0.0:
        return fnm1, fn, sx, sxx
    fr1 = fr + fsign
    if sd < 0.0:  # the leaving part is negative
        sxx = sxx + fsign * sd * (fr + fr1) / (fr * fr1 * (0.6 + (fr + fr1) ** 2))
        sx = sn / fr1 + (fr + fr1) * sxx
        su = sn
    else:  # the staying part is negative
        sxx = sxx - fsign * su * (fr + fr1) / (fr * fr1 * (0.6 + (fr + fr1) ** 2))
        sx = sn / fr + (fr + fr1) * sxx
        su = 0.0
    sd = sn - su
    if an > 0.0:
        return fnm1, sd, sx, sxx
    return -sd, fn, sx, sxx


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _bound(m1, m2, lim):
    """Prather's bounds on a first and second moment of a non-negative distribution of mass
    `lim` (``|m1| ≤ 1.5 lim``, ``|m1| − lim ≤ m2 ≤ 2 lim − |m1| / 3``)."""
    m1 = min(max(m1, -1.5 * lim), 1.5 * lim)
    return m1, min(max(m2, abs(m1) - lim), 2.0 * lim - abs(m1) / 3.0)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _moment_fluxes(d, fracm, frac1, fi, mom, u, b):
    """Fluxes of the nine moments (local order) through a face carrying air mass `d` and
    tracer `fi`, taken from cell `u` of line `b` of a tile (Prather 1986, eq. 13)."""
    a, aa = mom[_A, u, b], mom[_AA, u, b]
    fa = d * (fracm * fracm * (a - 3.0 * frac1 * aa) - 3.0 * fi)
    faa = d * (d * fracm * fracm * fracm * aa - 5.0 * (d * fi + fa))
    fb = fracm * (mom[_B, u, b] - frac1 * mom[_AB, u, b])
    fab = d * (fracm * fracm * mom[_AB, u, b] - 3.0 * fb)
    fc = fracm * (mom[_C, u, b] - frac1 * mom[_CA, u, b])
    fca = d * (fracm * fracm * mom[_CA, u, b] - 3.0 * fc)
    fbb = fracm * mom[_BB, u, b]
    fcc = fracm * mom[_CC, u, b]
    fbc = fracm * mom[_BC, u, b]
    return (fa, fb, fc, faa, fbb, fcc, fab, fbc, fca)  # the order of _A .. _CA


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, **_NOALIAS)
def _sweep_tile(s, mom, mass, dm, periodic, f, fmom, frac, flag):
    """One QUS step along the first axis of a tile of lines; updates it in place.

    A tile holds ``B`` parallel lines of ``n`` cells, the line index innermost, so that every
    loop below runs over contiguous memory and vectorizes.

    Args:
        s: ``(n, B)`` tracer mass. mom: ``(9, n, B)`` moments in local order (a, b, c, aa, bb,
            cc, ab, bc, ca). mass: ``(n, B)`` air mass.
        dm: air mass flux per face, positive toward higher cell index. Periodic lines have
            ``n`` faces (face ``i`` between cells ``i`` and ``i + 1 mod n``); open lines have
            ``n − 1`` (face ``i`` between cells ``i`` and ``i + 1``), and their first and last
            cells are boundary cells that are read but not updated.
        periodic: whether the lines close on themselves.
        f, fmom, frac, flag: work arrays ``(n, B)``, ``(9, n, B)``, ``(2, n, B)``, ``(B,)``;
            on return ``f`` and ``fmom`` hold the tracer and moment fluxes through every face.
            No two array arguments may share memory (the kernel is compiled ``noalias``).
    """
    n, nb = s.shape
    n_faces = n if periodic else n - 1
    first = 0 if periodic else 1
    last = n if periodic else n - 1
    # Tracer flux through each face from the upstream cell's quadratic distribution. Both
    # neighbours are evaluated and the upstream one kept: a load from a data-dependent cell
    # would keep the loop from vectorizing.
    for i in range(n_faces):
        r = i + 1 if i + 1 < n else 0
        for b in range(nb):
            d = dm[i, b]
            ml = mass[i, b]
            mr = mass[r, b]
            xl = d / ml
            xr = d / mr
            xl = xl if ml > 0.0 else 0.0
            xr = xr if mr > 0.0 else 0.0
            xl1 = xl - 1.0
            xr1 = xr + 1.0
            gl = xl * (s[i, b] - xl1 * (mom[_A, i, b] - (xl1 + xl) * mom[_AA, i, b]))
            gr = xr * (s[r, b] - xr1 * (mom[_A, r, b] - (xr1 + xr) * mom[_AA, r, b]))
            neg = d < 0.0
            f[i, b] = gr if neg else gl
            frac[0, i, b] = xr if neg else xl
            frac[1, i, b] = xr1 if neg else xl1
    for c in range(first, last):
        left = c - 1 if c > 0 else n - 1
        n_bad = 0
        for b in range(nb):
            anm1 = frac[0, left, b]
            an = frac[0, c, b]
            fl = f[left, b]
            fr = f[c, b]
            out_l = -fl if anm1 < 0.0 else 0.0
            out_r = fr if an > 0.0 else 0.0
            bad = (out_l < 0.0) | (out_r < 0.0) | (s[c, b] - out_l - out_r < 0.0)
            flag[b] = bad
            n_bad += bad
        if n_bad:
            for b in range(nb):
                if flag[b]:
                    fl, fr, sx, sxx = _limit(
                        frac[0, left, b], frac[0, c, b], f[left, b], f[c, b], s[c, b],
                        mom[_A, c, b], mom[_AA, c, b],
                    )
                    f[left, b] = fl
                    f[c, b] = fr
                    mom[_A, c, b] = sx
                    mom[_AA, c, b] = sxx
    for i in range(n_faces):
        r = i + 1 if i + 1 < n else 0
        for b in range(nb):
            d = dm[i, b]
            fracm = frac[0, i, b]
            frac1 = frac[1, i, b]
            fi = f[i, b]
            neg = d < 0.0
            # Both candidate upstream cells are evaluated and the upstream one kept.
            left = _moment_fluxes(d, fracm, frac1, fi, mom, i, b)
            right = _moment_fluxes(d, fracm, frac1, fi, mom, r, b)
            for q in range(N_MOMENTS):
                fmom[q, i, b] = right[q] if neg else left[q]
    n_empty = 0
    for c in range(first, last):
        left = c - 1 if c > 0 else n - 1
        for b in range(nb):
            m0 = mass[c, b]
            dl = dm[left, b]
            dr = dm[c, b]
            mnew = m0 + dl - dr
            n_empty += mnew <= 0.0
            inv = 1.0 / mnew
            dm2 = dl + dr
            fl = f[left, b]
            fr = f[c, b]
            snew = s[c, b] + fl - fr
            fal = fmom[_A, left, b]
            far = fmom[_A, c, b]
            san = (mom[_A, c, b] * m0 - 3.0 * (-dm2 * snew + m0 * (fl + fr)) + (fal - far)) * inv
            saa = (
                mom[_AA, c, b] * m0 * m0
                + 2.5 * snew * (m0 * m0 - mnew * mnew - 3.0 * dm2 * dm2)
                + 5.0 * (m0 * (m0 * (fl - fr) - fal - far) + dm2 * san * mnew)
                + (fmom[_AA, left, b] - fmom[_AA, c, b])
            ) * (inv * inv)
            fxl = fmom[_B, left, b]
            fxr = fmom[_B, c, b]
            sbn = mom[_B, c, b] + fxl - fxr
            sab = (mom[_AB, c, b] * m0 - 3.0 * (-dm2 * sbn + m0 * (fxl + fxr))
                   + (fmom[_AB, left, b] - fmom[_AB, c, b])) * inv
            fxl = fmom[_C, left, b]
            fxr = fmom[_C, c, b]
            scn = mom[_C, c, b] + fxl - fxr
            sca = (mom[_CA, c, b] * m0 - 3.0 * (-dm2 * scn + m0 * (fxl + fxr))
                   + (fmom[_CA, left, b] - fmom[_CA, c, b])) * inv
            sbb = mom[_BB, c, b] + fmom[_BB, left, b] - fmom[_BB, c, b]
            scc = mom[_CC, c, b] + fmom[_CC, left, b] - fmom[_CC, c, b]
            sbc = mom[_BC, c, b] + fmom[_BC, left, b] - fmom[_BC, c, b]
            lim = max(snew, 0.0)
            san, saa = _bound(san, saa, lim)
            sbn, sbb = _bound(sbn, sbb, lim)
            scn, scc = _bound(scn, scc, lim)
            mom[_A, c, b] = san
            mom[_AA, c, b] = saa
            mom[_B, c, b] = sbn
            mom[_BB, c, b] = sbb
            mom[_C, c, b] = scn
            mom[_CC, c, b] = scc
            mom[_AB, c, b] = min(max(sab, -lim), lim)
            mom[_BC, c, b] = min(max(sbc, -lim), lim)
            mom[_CA, c, b] = min(max(sca, -lim), lim)
            s[c, b] = snew
            mass[c, b] = mnew
    return n_empty > 0


@numba.njit(cache=True)
def _n_substeps(mass, dm, periodic):
    """Sub-steps needed so that no cell of a tile loses more than MAX_OUTFLOW_FRACTION of its
    air in one sub-step (0 if more than MAX_SUBSTEPS would be needed)."""
    n, nb = mass.shape
    worst = 0.0
    first = 0 if periodic else 1
    last = n if periodic else n - 1
    for c in range(first, last):
        left = c - 1 if c > 0 else n - 1
        for b in range(nb):
            out = max(dm[c, b], 0.0) + max(-dm[left, b], 0.0)
            worst = max(worst, out / mass[c, b])
    n_sub = max(int(np.ceil(worst / MAX_OUTFLOW_FRACTION)), 1)
    return n_sub if n_sub <= MAX_SUBSTEPS else 0


def sweep_x(s, mom, mass, u_flux, scale):
    """Advects along longitude with fluxes ``scale * u_flux``; rows sub-cycle as needed.

    Returns the largest number of sub-steps any row used.
    """
    nl, jm, im = s.shape
    return _check_substeps(_sweep_x(s, mom, mass, u_flux, scale, *_workspace(im, nl, False)))


def sweep_z(s, mom, mass, w_flux, scale):
    """Advects vertically with fluxes ``scale * w_flux``; rows sub-cycle as needed.

    The surface and the lid are closed. Returns the most sub-steps any row used.
    """
    nl, jm, im = s.shape
    return _check_substeps(_sweep_z(s, mom, mass, w_flux, scale, *_workspace(nl + 2, im, True)))


@functools.lru_cache(maxsize=16)
def _workspace(n: int, nb: int, closed: bool):
    """Per-thread work tiles ``(n, nb)`` for the sweep kernels, allocated once per shape.

    Fresh large arrays on every call would cost page faults each time; tiles are indexed by
    ``numba.get_thread_id()``. A closed tile (z sweep) starts with empty boundary cells.
    """
    threads = numba.config.NUMBA_NUM_THREADS
    tmass = np.ones((threads, n, nb))
    return (
        np.zeros((threads, n, nb)),  # tracer
        np.zeros((threads, N_MOMENTS, n, nb)),  # moments
        tmass,  # air mass (1 in closed boundary cells: no division by zero)
        np.zeros((threads, n, nb)),  # air mass flux per face
        np.empty((threads, n, nb)),  # tracer flux
        np.empty((threads, N_MOMENTS, n, nb)),  # moment fluxes
        np.empty((threads, 2, n, nb)),  # flux fractions
        np.empty((threads, nb), np.bool_),  # limiter flags
    )


@numba.njit(parallel=True, cache=True)
def _sweep_x(s, mom, mass, u_flux, scale, w_s, w_mom, w_mass, w_dm, w_f, w_fmom, w_frac, w_flag):
    """Kernel of :func:`sweep_x`. Each row is one tile: lines along longitude, one per layer.

    Returns the sub-steps of each row (0: too many needed; -1: a cell was emptied).
    """
    nl, jm, im = s.shape
    used = np.ones(jm, np.int64)
    for j in numba.prange(1, jm - 1):  # polar caps are single cells: nothing moves within them
        tid = numba.get_thread_id()
        ts, tmom, tmass, tdm = w_s[tid], w_mom[tid], w_mass[tid], w_dm[tid]
        f, fmom, frac, flag = w_f[tid], w_fmom[tid], w_frac[tid], w_flag[tid]
        for k in range(nl):
            for i in range(im):
                ts[i, k] = s[k, j, i]
                tmass[i, k] = mass[k, j, i]
                tdm[i, k] = scale * u_flux[k, j, i]
        for q in range(N_MOMENTS):
            g = ORDER_X[q]
            for k in range(nl):
                for i in range(im):
                    tmom[q, i, k] = mom[g, k, j, i]
        n_sub = _n_substeps(tmass, tdm, True)
        used[j] = n_sub
        if n_sub == 0:
            continue
        if n_sub > 1:
            for i in range(im):
                for k in range(nl):
                    tdm[i, k] /= n_sub
        for _ in range(n_sub):
            if _sweep_tile(ts, tmom, tmass, tdm, True, f, fmom, frac, flag):
                used[j] = -1
        for k in range(nl):
            for i in range(im):
                s[k, j, i] = ts[i, k]
                mass[k, j, i] = tmass[i, k]
        for q in range(N_MOMENTS):
            g = ORDER_X[q]
            for k in range(nl):
                for i in range(im):
                    mom[g, k, j, i] = tmom[q, i, k]
    return used


def _check_substeps(used: np.ndarray) -> int:
    """Raises if a sweep needed too many sub-steps or emptied a cell; returns the most used."""
    if (used == 0).any():
        raise ValueError(f"QUS needs more than {MAX_SUBSTEPS} sub-steps: the time step is too long")
    if (used < 0).any():
        raise ValueError("QUS sweep emptied a cell of air: the time step is too long")
    return int(used.max())


def sweep_y(s, mom, mass, v_flux, scale):
    """Advects along latitude with fluxes ``scale * v_flux``, exchanging with the polar caps."""
    nl, jm, im = s.shape
    _sweep_y(s, mom, mass, v_flux, scale, *_workspace(jm, im, False))


@numba.njit(parallel=True, cache=True)
def _sweep_y(s, mom, mass, v_flux, scale, w_s, w_mom, w_mass, w_dm, w_f, w_fmom, w_frac, w_flag):
    """Advects along latitude with fluxes ``scale * v_flux``, exchanging with the polar caps.

    Each layer is one tile: lines along latitude, one per longitude. Each cap is gathered into
    one cell (all ``im`` shares), is the boundary cell of every meridian line, receives or
    gives the flux of each of the ``im`` faces around it, and is shared out again. Within a
    cap only the tracer mass and its z-moments are kept: a cap is well mixed horizontally.
    """
    nl, jm, im = s.shape
    status = np.ones(nl, np.int64)
    for k in numba.prange(nl):
        tid = numba.get_thread_id()
        ts, tmom, tmass, tdm = w_s[tid], w_mom[tid], w_mass[tid], w_dm[tid]
        f, fmom, frac, flag = w_f[tid], w_fmom[tid], w_frac[tid], w_flag[tid]
        # Cap totals: air, tracer, z and zz moments (local c and cc in a y-sweep).
        caps = np.zeros((2, 4))
        for pole in range(2):
            j = 0 if pole == 0 else jm - 1
            for i in range(im):
                caps[pole, 0] += mass[k, j, i]
                caps[pole, 1] += s[k, j, i]
                caps[pole, 2] += mom[MZ, k, j, i]
                caps[pole, 3] += mom[MZZ, k, j, i]
        for j in range(jm):
            for i in range(im):
                ts[j, i] = s[k, j, i]
                tmass[j, i] = mass[k, j, i]
        for q in range(N_MOMENTS):
            g = ORDER_Y[q]
            for j in range(jm):
                for i in range(im):
                    tmom[q, j, i] = mom[g, k, j, i]
        for j in range(jm - 1):
            for i in range(im):
                tdm[j, i] = scale * v_flux[k, j, i]
        for pole in range(2):
            j = 0 if pole == 0 else jm - 1
            for i in range(im):
                tmass[j, i] = caps[pole, 0]
                ts[j, i] = caps[pole, 1]
                for q in range(N_MOMENTS):
                    tmom[q, j, i] = 0.0
                tmom[_C, j, i] = caps[pole, 2]
                tmom[_CC, j, i] = caps[pole, 3]
        out_of_cap = np.zeros(2)
        for i in range(im):
            out_of_cap[0] += max(tdm[0, i], 0.0)
            out_of_cap[1] += max(-tdm[jm - 2, i], 0.0)
        if _sweep_tile(ts, tmom, tmass, tdm, False, f, fmom, frac, flag):
            status[k] = -1
        for j in range(1, jm - 1):
            for i in range(im):
                s[k, j, i] = ts[j, i]
                mass[k, j, i] = tmass[j, i]
        for q in range(N_MOMENTS):
            g = ORDER_Y[q]
            for j in range(1, jm - 1):
                for i in range(im):
                    mom[g, k, j, i] = tmom[q, j, i]
        # Faces 0 and jm-2 border the south and north caps; positive flux is northward.
        new_caps = caps.copy()
        for pole in range(2):
            face = 0 if pole == 0 else jm - 2
            sign = -1.0 if pole == 0 else 1.0
            for i in range(im):
                new_caps[pole, 0] += sign * tdm[face, i]
                new_caps[pole, 1] += sign * f[face, i]
                new_caps[pole, 2] += sign * fmom[_C, face, i]
                new_caps[pole, 3] += sign * fmom[_CC, face, i]
            if out_of_cap[pole] > MAX_OUTFLOW_FRACTION * caps[pole, 0]:
                status[k] = -1
        for pole in range(2):
            j = 0 if pole == 0 else jm - 1
            for i in range(im):
                mass[k, j, i] = new_caps[pole, 0] / im
                s[k, j, i] = new_caps[pole, 1] / im
                for q in range(N_MOMENTS):
                    mom[q, k, j, i] = 0.0
                mom[MZ, k, j, i] = new_caps[pole, 2] / im
                mom[MZZ, k, j, i] = new_caps[pole, 3] / im
    if (status < 0).any():
        raise ValueError("QUS y-sweep emptied a cell or a polar cap: the time step is too long")


@numba.njit(parallel=True, cache=True)
def _sweep_z(s, mom, mass, w_flux, scale, w_s, w_mom, w_mass, w_dm, w_f, w_fmom, w_frac, w_flag):
    """Kernel of :func:`sweep_z`. Each row is one tile: lines along the vertical, one per
    longitude, with a closed boundary cell below the surface and above the lid.

    Returns the sub-steps of each row (0: too many needed; -1: a cell was emptied).
    """
    nl, jm, im = s.shape
    n = nl + 2
    used = np.ones(jm, np.int64)
    for j in numba.prange(jm):
        tid = numba.get_thread_id()
        ts, tmom, tmass, tdm = w_s[tid], w_mom[tid], w_mass[tid], w_dm[tid]
        f, fmom, frac, flag = w_f[tid], w_fmom[tid], w_frac[tid], w_flag[tid]
        # Boundary cells (0 and n-1) stay empty with unit air mass; boundary faces carry 0.
        for k in range(nl):
            for i in range(im):
                ts[k + 1, i] = s[k, j, i]
                tmass[k + 1, i] = mass[k, j, i]
        for q in range(N_MOMENTS):
            g = ORDER_Z[q]
            for k in range(nl):
                for i in range(im):
                    tmom[q, k + 1, i] = mom[g, k, j, i]
        for k in range(nl - 1):
            for i in range(im):
                tdm[k + 1, i] = scale * w_flux[k, j, i]
        n_sub = _n_substeps(tmass, tdm, False)
        used[j] = n_sub
        if n_sub == 0:
            continue
        if n_sub > 1:
            for k in range(1, n - 2):
                for i in range(im):
                    tdm[k, i] /= n_sub
        for _ in range(n_sub):
            if _sweep_tile(ts, tmom, tmass, tdm, False, f, fmom, frac, flag):
                used[j] = -1
        for k in range(nl):
            for i in range(im):
                s[k, j, i] = ts[k + 1, i]
                mass[k, j, i] = tmass[k + 1, i]
        for q in range(N_MOMENTS):
            g = ORDER_Z[q]
            for k in range(nl):
                for i in range(im):
                    mom[g, k, j, i] = tmom[q, k + 1, i]
    return used


def advect(s, mom, mass, u_flux, v_flux, w_flux, reverse=False):
    """One split advection step: x, y, z (or z, y, x if `reverse`).

    Alternating the order on successive steps (Strang 1968) makes every pair of steps
    symmetric, x y z z y x, hence second-order accurate in time, with three sweeps per step
    instead of the four of x/2 y z x/2.

    Args:
        s: ``(n_layers, jm, im)`` tracer mass, kg; updated in place.
        mom: ``(9, n_layers, jm, im)`` moments, kg; updated in place.
        mass: ``(n_layers, jm, im)`` air mass, kg; updated in place. When the fluxes satisfy
            discrete continuity, it returns to its starting value after the full step.
        u_flux, v_flux, w_flux: air mass crossing each face during the step, kg (see module
            docstring for the staggering).
        reverse: reverse the order of the sweeps (do so on every other step).

    Returns:
        The largest number of sub-steps any x or z sweep used.
    """
    if reverse:
        most = sweep_z(s, mom, mass, w_flux, 1.0)
        sweep_y(s, mom, mass, v_flux, 1.0)
        return max(most, sweep_x(s, mom, mass, u_flux, 1.0))
    most = sweep_x(s, mom, mass, u_flux, 1.0)
    sweep_y(s, mom, mass, v_flux, 1.0)
    return max(most, sweep_z(s, mom, mass, w_flux, 1.0))
