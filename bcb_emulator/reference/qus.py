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
cell's air in place), as ModelE does near the poles; the z-sweep sub-cycles row by row.

Implementation: every sweep works in place in the model arrays, and every inner loop runs
along the contiguous longitude axis, so that LLVM vectorizes it (8 doubles per AVX-512
instruction): the x sweep one line at a time, the y and z sweeps on tiles of ``im`` parallel
lines (one layer, one row). The scheme's arithmetic is written once, in small inlined
functions shared by both kernels; upstream values are computed from both neighbours and
selected, because a load from a data-dependent cell defeats vectorization.

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
#: (a, b, c, aa, bb, cc, ab, bc, ca); these map local to global indices (for x the local order
#: is the global one).
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


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _bound(m1, m2, lim):
    """Prather's bounds on a first and second moment of a non-negative distribution of mass
    `lim` (``|m1| ≤ 1.5 lim``, ``|m1| − lim ≤ m2 ≤ 2 lim − |m1| / 3``)."""
    m1 = min(max(m1, -1.5 * lim), 1.5 * lim)
    return m1, min(max(m2, abs(m1) - lim), 2.0 * lim - abs(m1) / 3.0)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _load9(mom, at):
    """The nine moments ``mom[q][at]`` of one cell (`mom`: an array ``(9, ...)`` or a tuple
    of nine arrays; `at`: an index or a tuple of indices), as a tuple."""
    return (
        mom[0][at], mom[1][at], mom[2][at], mom[3][at], mom[4][at], mom[5][at], mom[6][at],
        mom[7][at], mom[8][at],
    )  # fmt: skip


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _store9(mom, at, m9):
    """Stores nine moments into ``mom[q][at]`` (constant indices: a loop over a tuple would
    put it in memory and keep the caller's loop from vectorizing)."""
    mom[0][at], mom[1][at], mom[2][at] = m9[0], m9[1], m9[2]
    mom[3][at], mom[4][at], mom[5][at] = m9[3], m9[4], m9[5]
    mom[6][at], mom[7][at], mom[8][at] = m9[6], m9[7], m9[8]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _pick9(cond, a, b):
    """``a if cond else b`` for tuples of nine values, element by element."""
    return (
        a[0] if cond else b[0], a[1] if cond else b[1], a[2] if cond else b[2],
        a[3] if cond else b[3], a[4] if cond else b[4], a[5] if cond else b[5],
        a[6] if cond else b[6], a[7] if cond else b[7], a[8] if cond else b[8],
    )  # fmt: skip


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _upstream_flux(d, m, s, a, aa, side):
    """Tracer carried through a face by the air mass `d` from a candidate upstream cell.

    Args:
        d: air mass through the face, positive toward higher cell index.
        m, s, a, aa: the cell's air mass, tracer mass and along-sweep moments.
        side: −1 if the cell lies before the face (upstream when ``d ≥ 0``), +1 after it.

    Returns:
        ``(flux, fracm, frac1)``: the tracer flux, the signed fraction of the cell's air that
        crosses, and that fraction plus `side` (Prather 1986, eq. 12).
    """
    fracm = d / m
    fracm = fracm if m > 0.0 else 0.0
    frac1 = fracm + side
    return fracm * (s - frac1 * (a - (frac1 + fracm) * aa)), fracm, frac1


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _moment_fluxes(d, fracm, frac1, fi, m9):
    """Fluxes of the nine moments (local order) through a face carrying air mass `d` and
    tracer `fi` out of an upstream cell with moments `m9` (Prather 1986, eq. 13)."""
    a, b, c, aa, bb, cc, ab, bc, ca = m9
    fa = d * (fracm * fracm * (a - 3.0 * frac1 * aa) - 3.0 * fi)
    faa = d * (d * fracm * fracm * fracm * aa - 5.0 * (d * fi + fa))
    fb = fracm * (b - frac1 * ab)
    fab = d * (fracm * fracm * ab - 3.0 * fb)
    fc = fracm * (c - frac1 * ca)
    fca = d * (fracm * fracm * ca - 3.0 * fc)
    return (fa, fb, fc, faa, fracm * bb, fracm * cc, fab, fracm * bc, fca)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _cell_update(m0, dl, dr, s0, fl, fr, m9, gl, gr):
    """New air mass, tracer mass and moments of a cell (Prather 1986, eqs. 14–16).

    Args:
        m0, s0, m9: the cell's air mass, tracer mass and moments (local order).
        dl, dr: air mass through its left and right faces (positive rightward).
        fl, fr: tracer through them. gl, gr: moment fluxes through them.

    Returns:
        ``(mass, tracer, moments)``, the moments bounded by Prather's limits for a
        non-negative distribution: the along-sweep limiter fixes only this direction, and
        cross moments carried along could otherwise outgrow a nearly emptied cell and defeat
        the next sweep's limiter.
    """
    a, b, c, aa, bb, cc, ab, bc, ca = m9
    mnew = m0 + dl - dr
    inv = 1.0 / mnew
    dm2 = dl + dr
    snew = s0 + fl - fr
    san = (a * m0 - 3.0 * (-dm2 * snew + m0 * (fl + fr)) + (gl[_A] - gr[_A])) * inv
    saa = (
        aa * m0 * m0
        + 2.5 * snew * (m0 * m0 - mnew * mnew - 3.0 * dm2 * dm2)
        + 5.0 * (m0 * (m0 * (fl - fr) - gl[_A] - gr[_A]) + dm2 * san * mnew)
        + (gl[_AA] - gr[_AA])
    ) * (inv * inv)
    # Cross directions: first moment and its mixed moment with the sweep direction.
    sbn = b + gl[_B] - gr[_B]
    sab = (ab * m0 - 3.0 * (-dm2 * sbn + m0 * (gl[_B] + gr[_B])) + (gl[_AB] - gr[_AB])) * inv
    scn = c + gl[_C] - gr[_C]
    sca = (ca * m0 - 3.0 * (-dm2 * scn + m0 * (gl[_C] + gr[_C])) + (gl[_CA] - gr[_CA])) * inv
    lim = max(snew, 0.0)
    san, saa = _bound(san, saa, lim)
    sbn, sbb = _bound(sbn, bb + gl[_BB] - gr[_BB], lim)
    scn, scc = _bound(scn, cc + gl[_CC] - gr[_CC], lim)
    sab = min(max(sab, -lim), lim)
    sbc = min(max(bc + gl[_BC] - gr[_BC], -lim), lim)
    sca = min(max(sca, -lim), lim)
    return mnew, snew, (san, sbn, scn, saa, sbb, scc, sab, sbc, sca)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _update_cell(s, m9, mass, at, dl, dr, fl, fr, gl, gr):
    """Replaces cell `at` of `s`, `m9`, `mass` by its state after the sweep, given the air,
    tracer and moment fluxes through its faces (:func:`_cell_update`); returns whether the
    cell was emptied of air."""
    m, sn, new = _cell_update(mass[at], dl, dr, s[at], fl, fr, _load9(m9, at), gl, gr)
    mass[at] = m
    s[at] = sn
    _store9(m9, at, new)
    return m <= 0.0


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _negative_part(anm1, an, fl, fr, sn):
    """Whether a division of a cell (leaving left, staying, leaving right) is negative."""
    out_l = -fl if anm1 < 0.0 else 0.0
    out_r = fr if an > 0.0 else 0.0
    return (out_l < 0.0) | (out_r < 0.0) | (sn - out_l - out_r < 0.0)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _face_flux(d, s, m9, mass, i, r):
    """Tracer flux through the face between cells `i` and `r` (indices into `s`, `m9`,
    `mass`) carrying air mass `d` (positive from `i` to `r`): ``(flux, fracm, frac1)``.

    Both neighbours are evaluated and the upstream one kept: a load from a data-dependent
    cell would keep the caller's loop from vectorizing.
    """
    gl, xl, xl1 = _upstream_flux(d, mass[i], s[i], m9[_A][i], m9[_AA][i], -1.0)
    gr, xr, xr1 = _upstream_flux(d, mass[r], s[r], m9[_A][r], m9[_AA][r], 1.0)
    neg = d < 0.0
    return (gr if neg else gl), (xr if neg else xl), (xr1 if neg else xl1)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, forceinline=True)
def _face_moments(d, fracm, frac1, fi, m9, i, r):
    """Moment fluxes through the face between cells `i` and `r`, from its upstream cell."""
    left = _moment_fluxes(d, fracm, frac1, fi, _load9(m9, i))
    right = _moment_fluxes(d, fracm, frac1, fi, _load9(m9, r))
    return _pick9(d < 0.0, right, left)


@numba.njit(cache=True, forceinline=True)
def _index(vertical, c, b, fixed):
    """Index of cell `c` of line `b` of a tile in the model arrays: ``(c, fixed, b)`` for a
    z tile (`vertical`, row `fixed`), ``(fixed, c, b)`` for a y tile (layer `fixed`).

    A flag and not a function argument: a kernel that passes a function as a value holds the
    address of a Python object, and numba cannot cache it (every new process would compile
    the y and z sweeps again, about 40 s).
    """
    c, fixed = np.int64(c), np.int64(fixed)  # a prange index is unsigned
    return (c, fixed, b) if vertical else (fixed, c, b)


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, **_NOALIAS)
def _sweep_tile(vertical, fixed, s, m9, mass, dm, closed, f, fmom, frac, flag):
    """One QUS step along a tile of parallel lines, in place in the model arrays.

    A tile holds ``B`` parallel lines of ``n`` cells, the line index along the contiguous
    (longitude) axis, so that every loop below vectorizes along it: the lines of one row
    (z sweep) or of one layer (y sweep).

    Args:
        vertical: whether the lines run along the layers (a z tile) or along the rows (a y
            tile); :func:`_index` maps cell `c` of line `b` to the model arrays.
        fixed: the row (z) or layer (y) of the tile.
        s: ``(n_layers, jm, im)`` tracer mass. m9: the nine moment arrays of that shape in
            local order (a, b, c, aa, bb, cc, ab, bc, ca). mass: air mass.
        dm: ``(n + 1, B)`` air mass flux, positive toward higher cell index: ``dm[i + 1]``
            crosses face ``i`` between cells ``i`` and ``i + 1``, so the faces of cell ``c``
            are rows ``c`` and ``c + 1``; rows 0 and ``n`` must be 0.
        closed: if true, every cell is updated and the outer faces are closed (rows 0 and
            ``n`` of the work arrays are zero); if false, the first and last cells are
            boundary cells, read but not updated.
        f, fmom, frac, flag: work arrays ``(n + 1, B)``, ``(9, n + 1, B)``, ``(2, n + 1, B)``,
            ``(B,)`` whose rows 0 and ``n`` are zero; on return ``f`` and ``fmom`` hold the
            tracer and moment fluxes through every face, indexed like `dm`.
            No two array arguments may share memory (the kernel is compiled ``noalias``).

    Returns:
        Whether a cell was emptied of air (the time step is too long).
    """
    n = dm.shape[0] - 1
    nb = dm.shape[1]
    first, last = (0, n) if closed else (1, n - 1)
    # Tracer flux through each face from the upstream cell's quadratic distribution.
    for i in range(n - 1):
        r = i + 1
        for b in range(nb):
            at_i, at_r = _index(vertical, i, b, fixed), _index(vertical, r, b, fixed)
            fi, x0, x1 = _face_flux(dm[r, b], s, m9, mass, at_i, at_r)
            f[r, b], frac[0, r, b], frac[1, r, b] = fi, x0, x1
    # Positivity: find cells where a division is negative, then adjust their along-sweep
    # moments and fluxes (in cell order: a fix changes the face the next cell shares).
    for c in range(first, last):
        n_bad = 0
        for b in range(nb):
            sc = s[_index(vertical, c, b, fixed)]
            bad = _negative_part(frac[0, c, b], frac[0, c + 1, b], f[c, b], f[c + 1, b], sc)
            flag[b] = bad
            n_bad += bad
        if n_bad:
            for b in range(nb):
                if flag[b]:
                    at = _index(vertical, c, b, fixed)
                    f[c, b], f[c + 1, b], m9[_A][at], m9[_AA][at] = _limit(
                        frac[0, c, b], frac[0, c + 1, b], f[c, b], f[c + 1, b], s[at],
                        m9[_A][at], m9[_AA][at],
                    )  # fmt: skip
    # Fluxes of the moments, again from both candidate upstream cells.
    for i in range(n - 1):
        r = i + 1
        for b in range(nb):
            at_i, at_r = _index(vertical, i, b, fixed), _index(vertical, r, b, fixed)
            m = _face_moments(dm[r, b], frac[0, r, b], frac[1, r, b], f[r, b], m9, at_i, at_r)
            _store9(fmom, (r, b), m)
    # New air mass, tracer mass and moments of every updated cell.
    n_empty = 0
    for c in range(first, last):
        for b in range(nb):
            n_empty += _update_cell(
                s, m9, mass, _index(vertical, c, b, fixed), dm[c, b], dm[c + 1, b], f[c, b],
                f[c + 1, b], _load9(fmom, (c, b)), _load9(fmom, (c + 1, b)),
            )  # fmt: skip
    return n_empty > 0


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH, **_NOALIAS)
def _sweep_line(s, m9, mass, dm, f, fmom, frac, flag):
    """One QUS step along one periodic line, in place (the x sweep).

    The same scheme as :func:`_sweep_tile`, for a line that closes on itself and lies along
    the contiguous axis of the model arrays: each loop runs along the line and vectorizes
    there; only the face that closes the circle is computed apart.

    Args:
        s: ``(n,)`` tracer mass. m9: the nine ``(n,)`` moment arrays in local order.
        mass: ``(n,)`` air mass.
        dm: ``(n + 1,)`` air mass flux; ``dm[i + 1]`` crosses face ``i`` (between cells ``i``
            and ``i + 1 mod n``, positive toward ``i + 1``) and ``dm[0]`` repeats face
            ``n − 1``, so the faces of cell ``c`` are ``c`` (left) and ``c + 1`` (right).
        f, fmom, frac: work arrays indexed like `dm`, with a leading axis of 9 and 2 for
            `fmom` and `frac`. flag: work array ``(n,)``.
            No two array arguments may share memory (the kernel is compiled ``noalias``).

    Returns:
        Whether a cell was emptied of air (the time step is too long).
    """
    n = s.shape[0]
    for i in range(n - 1):
        f[i + 1], frac[0, i + 1], frac[1, i + 1] = _face_flux(dm[i + 1], s, m9, mass, i, i + 1)
    f[n], frac[0, n], frac[1, n] = _face_flux(dm[n], s, m9, mass, n - 1, 0)
    f[0], frac[0, 0], frac[1, 0] = f[n], frac[0, n], frac[1, n]
    n_bad = 0
    for c in range(n):
        bad = _negative_part(frac[0, c], frac[0, c + 1], f[c], f[c + 1], s[c])
        flag[c] = bad
        n_bad += bad
    if n_bad:
        # In cell order, as in _sweep_tile: a fix changes the face the next cell shares,
        # so every cell is checked again with the current fluxes.
        for c in range(n):
            anm1, an = frac[0, c], frac[0, c + 1]
            if _negative_part(anm1, an, f[c], f[c + 1], s[c]):
                f[c], f[c + 1], m9[_A][c], m9[_AA][c] = _limit(
                    anm1, an, f[c], f[c + 1], s[c], m9[_A][c], m9[_AA][c]
                )
                if c == 0:
                    f[n] = f[0]
                if c == n - 1:
                    f[0] = f[n]
    for i in range(n - 1):
        d = dm[i + 1]
        m = _face_moments(d, frac[0, i + 1], frac[1, i + 1], f[i + 1], m9, i, i + 1)
        _store9(fmom, i + 1, m)
    _store9(fmom, n, _face_moments(dm[n], frac[0, n], frac[1, n], f[n], m9, n - 1, 0))
    _store9(fmom, 0, _load9(fmom, n))
    n_empty = 0
    for c in range(n):
        n_empty += _update_cell(
            s, m9, mass, c, dm[c], dm[c + 1], f[c], f[c + 1], _load9(fmom, c), _load9(fmom, c + 1)
        )
    return n_empty > 0


@numba.njit(cache=True)
def _substeps(worst):
    """Sub-steps so that no cell loses more than MAX_OUTFLOW_FRACTION of its air in one,
    given the largest outflow fraction of the whole step (0 if more than MAX_SUBSTEPS)."""
    n_sub = max(int(np.ceil(worst / MAX_OUTFLOW_FRACTION)), 1)
    return n_sub if n_sub <= MAX_SUBSTEPS else 0


def sweep_x(s, mom, mass, u_flux, scale):
    """Advects along longitude with fluxes ``scale * u_flux``; rows sub-cycle as needed.

    Returns the largest number of sub-steps any row used.
    """
    nl, jm, im = s.shape
    work = _workspace((im + 1,))
    return _check_substeps(_sweep_x(s, mom, mass, u_flux, scale, *work))


@functools.lru_cache(maxsize=16)
def _workspace(shape: tuple[int, ...]):
    """Per-thread work arrays of the sweep kernels (face fluxes, fractions, flags), allocated
    once per shape: ``(n + 1,)`` for a line, ``(n + 1, B)`` for a tile.

    Fresh arrays on every call would cost page faults each time; they are indexed by
    ``numba.get_thread_id()``. They start at zero: the closed outer faces of a tile are rows
    that no kernel writes.
    """
    threads = numba.config.NUMBA_NUM_THREADS
    return (
        np.zeros((threads,) + shape),  # air mass flux
        np.zeros((threads,) + shape),  # tracer flux
        np.zeros((threads, N_MOMENTS) + shape),  # moment fluxes
        np.zeros((threads, 2) + shape),  # flux fractions
        np.zeros((threads, max(shape)), np.bool_),  # limiter flags
    )


@numba.njit(parallel=True, cache=True)
def _sweep_x(s, mom, mass, u_flux, scale, w_dm, w_f, w_fmom, w_frac, w_flag):
    """Kernel of :func:`sweep_x`: every line along longitude is swept in place
    (:func:`_sweep_line`); all layers of a row take the same number of sub-steps. The
    x-sweep's local moment order is the global one.

    Returns the sub-steps of each row (0: too many needed; -1: a cell was emptied).
    """
    nl, jm, im = s.shape
    used = np.ones(jm, np.int64)
    for j in numba.prange(1, jm - 1):  # polar caps are single cells: nothing moves within them
        tid = numba.get_thread_id()
        tdm, f, fmom, frac, flag = w_dm[tid], w_f[tid], w_fmom[tid], w_frac[tid], w_flag[tid]
        worst = 0.0
        for k in range(nl):
            for i in range(im):
                left = u_flux[k, j, i - 1 if i > 0 else im - 1]
                out = max(scale * u_flux[k, j, i], 0.0) + max(-scale * left, 0.0)
                worst = max(worst, out / mass[k, j, i])
        n_sub = _substeps(worst)
        used[j] = n_sub
        if n_sub == 0:
            continue
        for k in range(nl):
            for i in range(im):
                tdm[i + 1] = scale * u_flux[k, j, i] / n_sub
            tdm[0] = tdm[im]
            m9 = (
                mom[0, k, j], mom[1, k, j], mom[2, k, j], mom[3, k, j], mom[4, k, j],
                mom[5, k, j], mom[6, k, j], mom[7, k, j], mom[8, k, j],
            )  # fmt: skip
            for _ in range(n_sub):
                if _sweep_line(s[k, j], m9, mass[k, j], tdm, f, fmom, frac, flag):
                    used[j] = -1
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
    _sweep_y(s, mom, mass, v_flux, scale, *_workspace((jm + 1, im)))


def sweep_z(s, mom, mass, w_flux, scale):
    """Advects vertically with fluxes ``scale * w_flux``; rows sub-cycle as needed.

    The surface and the lid are closed. Returns the most sub-steps any row used.
    """
    nl, jm, im = s.shape
    return _check_substeps(_sweep_z(s, mom, mass, w_flux, scale, *_workspace((nl + 1, im))))


@numba.njit(cache=True)
def _planes(mom, order):
    """The nine moment arrays ``(n_layers, jm, im)`` in the local `order` of a sweep."""
    return (
        mom[order[0]], mom[order[1]], mom[order[2]], mom[order[3]], mom[order[4]],
        mom[order[5]], mom[order[6]], mom[order[7]], mom[order[8]],
    )  # fmt: skip


@numba.njit(parallel=True, cache=True)
def _sweep_y(s, mom, mass, v_flux, scale, w_dm, w_f, w_fmom, w_frac, w_flag):
    """Advects along latitude with fluxes ``scale * v_flux``, exchanging with the polar caps.

    Each layer is one tile: lines along latitude, one per longitude. Each cap is gathered into
    one cell (all ``im`` shares), is the boundary cell of every meridian line, receives or
    gives the flux of each of the ``im`` faces around it, and is shared out again. Within a
    cap only the tracer mass and its z-moments are kept: a cap is well mixed horizontally.
    """
    nl, jm, im = s.shape
    m9 = _planes(mom, ORDER_Y)
    status = np.ones(nl, np.int64)
    for k in numba.prange(nl):
        tid = numba.get_thread_id()
        tdm, f, fmom, frac, flag = w_dm[tid], w_f[tid], w_fmom[tid], w_frac[tid], w_flag[tid]
        # Cap totals: air, tracer, z and zz moments (local c and cc in a y-sweep); while
        # the layer is swept, every share of a cap holds the whole cap.
        caps = np.zeros((2, 4))
        for pole in range(2):
            j = 0 if pole == 0 else jm - 1
            for i in range(im):
                caps[pole, 0] += mass[k, j, i]
                caps[pole, 1] += s[k, j, i]
                caps[pole, 2] += m9[_C][k, j, i]
                caps[pole, 3] += m9[_CC][k, j, i]
            for i in range(im):
                mass[k, j, i] = caps[pole, 0]
                s[k, j, i] = caps[pole, 1]
                _store9(
                    m9, (k, j, i), (0.0, 0.0, caps[pole, 2], 0.0, 0.0, caps[pole, 3], 0.0, 0.0, 0.0)
                )
        for j in range(jm - 1):
            for i in range(im):
                tdm[j + 1, i] = scale * v_flux[k, j, i]
        out_of_cap = np.zeros(2)
        for i in range(im):
            out_of_cap[0] += max(tdm[1, i], 0.0)
            out_of_cap[1] += max(-tdm[jm - 1, i], 0.0)
        if _sweep_tile(False, k, s, m9, mass, tdm, False, f, fmom, frac, flag):
            status[k] = -1
        # Faces 0 and jm-2 (rows 1 and jm-1 of the face arrays) border the caps.
        for pole in range(2):
            j, face = (0, 1) if pole == 0 else (jm - 1, jm - 1)
            sign = -1.0 if pole == 0 else 1.0  # positive flux is northward
            new = caps[pole].copy()
            for i in range(im):
                new[0] += sign * tdm[face, i]
                new[1] += sign * f[face, i]
                new[2] += sign * fmom[_C, face, i]
                new[3] += sign * fmom[_CC, face, i]
            if out_of_cap[pole] > MAX_OUTFLOW_FRACTION * caps[pole, 0]:
                status[k] = -1
            for i in range(im):
                mass[k, j, i] = new[0] / im
                s[k, j, i] = new[1] / im
                _store9(
                    m9, (k, j, i), (0.0, 0.0, new[2] / im, 0.0, 0.0, new[3] / im, 0.0, 0.0, 0.0)
                )
    if (status < 0).any():
        raise ValueError("QUS y-sweep emptied a cell or a polar cap: the time step is too long")


@numba.njit(parallel=True, cache=True)
def _sweep_z(s, mom, mass, w_flux, scale, w_dm, w_f, w_fmom, w_frac, w_flag):
    """Kernel of :func:`sweep_z`. Each row is one tile: lines along the vertical, one per
    longitude, closed at the surface and at the lid.

    Returns the sub-steps of each row (0: too many needed; -1: a cell was emptied).
    """
    nl, jm, im = s.shape
    m9 = _planes(mom, ORDER_Z)
    used = np.ones(jm, np.int64)
    for j in numba.prange(jm):
        tid = numba.get_thread_id()
        tdm, f, fmom, frac, flag = w_dm[tid], w_f[tid], w_fmom[tid], w_frac[tid], w_flag[tid]
        worst = 0.0
        for k in range(nl):
            for i in range(im):
                up = scale * w_flux[k, j, i] if k < nl - 1 else 0.0
                down = scale * w_flux[k - 1, j, i] if k > 0 else 0.0
                worst = max(worst, (max(up, 0.0) + max(-down, 0.0)) / mass[k, j, i])
        n_sub = _substeps(worst)
        used[j] = n_sub
        if n_sub == 0:
            continue
        for k in range(nl - 1):
            for i in range(im):
                tdm[k + 1, i] = scale * w_flux[k, j, i] / n_sub
        for _ in range(n_sub):
            if _sweep_tile(True, j, s, m9, mass, tdm, True, f, fmom, frac, flag):
                used[j] = -1
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
