"""Physics of the reference model's transport: QUS advection and Williamson test case 1."""

import numpy as np
import pytest

from bcb_emulator.grid import VerticalGrid, get_grid
from bcb_emulator.reference import qus, tc1
from bcb_emulator.reference.meteorology import SyntheticMeteorology

DT = 1800.0


@pytest.fixture(scope="module")
def met():
    return SyntheticMeteorology(get_grid("coarse"), VerticalGrid(20), seed=3)


def _fluxes(met, t_days):
    u, v, w, _ = met.mass_fluxes(t_days)
    return u * DT, v * DT, w * DT


def test_mass_fluxes_satisfy_discrete_continuity(met):
    u, v, w, _ = met.mass_fluxes(200.0)
    div = met.horizontal_divergence(u, v)  # (nl, jm, im), kg/s
    scale = np.abs(u).max()
    # The column-integrated divergence vanishes: surface pressure is constant.
    assert np.abs(div.sum(axis=0)).max() < 1e-12 * scale
    # W is integrated from the divergence: mass in each layer is steady.
    w_below = np.concatenate([np.zeros_like(w[:1]), w[:-1]])
    assert np.abs(div + w - w_below)[:-1].max() < 1e-10 * scale
    assert np.all(w[-1] == 0.0)


def test_uniform_mixing_ratio_stays_uniform(met):
    mass = met.air_mass.copy()
    s = 3.5e-9 * mass
    mom = np.zeros((qus.N_MOMENTS,) + mass.shape)
    for step in range(12):
        qus.advect(s, mom, mass, *_fluxes(met, 100.0 + step / 48), reverse=bool(step % 2))
        np.testing.assert_allclose(mass, met.air_mass, rtol=1e-11)
    q = s / mass
    assert np.abs(q / 3.5e-9 - 1.0).max() < 1e-12


def test_advection_conserves_mass_and_positivity_of_a_spiky_field(met):
    rng = np.random.default_rng(0)
    mass = met.air_mass.copy()
    q = rng.lognormal(0.0, 2.0, mass.shape) * (rng.random(mass.shape) < 0.2)  # sparse spikes
    s = q * mass
    mom = np.zeros((qus.N_MOMENTS,) + mass.shape)
    total = s.sum()
    for step in range(24):
        mass[...] = met.air_mass
        qus.advect(s, mom, mass, *_fluxes(met, 50.0 + step / 48), reverse=bool(step % 2))
        assert s.min() >= 0.0
    assert abs(s.sum() - total) / total < 1e-13


def test_air_mass_returns_after_each_step(met):
    mass = met.air_mass.copy()
    s = mass.copy()
    mom = np.zeros((qus.N_MOMENTS,) + mass.shape)
    qus.advect(s, mom, mass, *_fluxes(met, 10.0))
    np.testing.assert_allclose(mass, met.air_mass, rtol=1e-12)


def test_x_sweep_subcycles_near_the_poles():
    grid = get_grid("native")
    u, v = tc1.face_fluxes(grid, np.pi / 2, DT, 1000.0)
    mass = (grid.area * 1000.0)[None].copy()
    s = mass.copy()
    mom = np.zeros((qus.N_MOMENTS,) + mass.shape)
    most = qus.sweep_x(s, mom, mass, u, 1.0)
    courant = (np.abs(u) / mass)[0, 1:-1].max()
    assert courant > 1.0  # flow over the pole: Courant > 1 next to the caps
    assert most == int(np.ceil(courant / qus.MAX_OUTFLOW_FRACTION)) or most >= courant
    np.testing.assert_allclose(s / mass, 1.0, rtol=1e-12)


@pytest.mark.parametrize(
    "grid_name, alpha, l2_max",
    [
        ("coarse", 0.0, 0.02),
        ("coarse", np.pi / 2, 0.20),
        ("native", 0.0, 0.01),  # target of the issue: <= 0.10 at 2°x2.5°
        ("native", np.pi / 2, 0.10),
    ],
)
def test_williamson_tc1_solid_body_rotation(grid_name, alpha, l2_max):
    result = tc1.run(get_grid(grid_name), alpha)
    assert result.l2 <= l2_max
    assert result.l1 <= 1.5 * l2_max and result.linf <= 2.0 * l2_max
    assert result.min_value >= 0.0  # positive definite
    assert abs(result.mass_error) < 1e-13


def test_tc1_from_cell_means_only_starts_without_moments_and_errs_more():
    grid = get_grid("coarse")
    column_mass = 1000.0
    exact = tc1.initial_state(grid, column_mass)
    means = tc1.initial_state(grid, column_mass, moments=False)
    np.testing.assert_array_equal(means[1], exact[1])  # the same cell averages
    assert not means[2].any() and np.abs(exact[2]).max() > 0.0
    with_moments = tc1.run(grid, 0.0)
    means_only = tc1.run(grid, 0.0, moments=False)
    # Benchmark at 4°×5°, α = 0: l2 0.0102 with the exact moments, 0.0316 from the means.
    assert 2.0 * with_moments.l2 < means_only.l2 < 0.05
    assert means_only.min_value >= 0.0 and abs(means_only.mass_error) < 1e-13


def test_tc1_error_norms_against_hand_computed_case():
    area = np.array([1.0, 3.0])
    l1, l2, linf = tc1.error_norms(np.array([1.0, 2.0]), np.array([2.0, 2.0]), area)
    assert l1 == pytest.approx(1.0 / 8.0)
    assert l2 == pytest.approx(1.0 / 4.0)
    assert linf == pytest.approx(0.5)


def test_limiter_keeps_every_division_of_a_cell_non_negative():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        sn = rng.random()
        sx, sxx = rng.normal(0, 2.0) * sn, rng.normal(0, 2.0) * sn
        # Outflow fractions as the sweeps allow them: together at most MAX_OUTFLOW_FRACTION.
        an = rng.random() * qus.MAX_OUTFLOW_FRACTION
        anm1 = -rng.random() * (qus.MAX_OUTFLOW_FRACTION - an) * rng.integers(0, 2)
        # Unlimited fluxes of the quadratic distribution through both faces.
        fn = an * (sn - (an - 1) * (sx - (2 * an - 1) * sxx))
        fnm1 = anm1 * (sn - (anm1 + 1) * (sx - (2 * anm1 + 1) * sxx))
        fl, fr, sx_new, sxx_new = qus._limit(anm1, an, fnm1, fn, sn, sx, sxx)
        left = -fl if anm1 < 0 else 0.0  # tracer leaving through the left face
        assert left >= -1e-12 and fr >= -1e-12 and sn - left - fr >= -1e-12
        # The limited fluxes are those of the adjusted quadratic distribution.
        assert fr == pytest.approx(an * (sn - (an - 1) * (sx_new - (2 * an - 1) * sxx_new)))


def test_parallel_sweeps_match_serial(met):
    """Per-thread work tiles: any number of threads gives the same state, bit for bit."""
    import numba

    rng = np.random.default_rng(2)
    start = rng.random(met.air_mass.shape) * met.air_mass
    results = []
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(threads)
        mass = met.air_mass.copy()
        s = start.copy()
        mom = np.zeros((qus.N_MOMENTS,) + mass.shape)
        for step in range(4):
            mass[...] = met.air_mass
            qus.advect(s, mom, mass, *_fluxes(met, 30.0 + step / 48), reverse=bool(step % 2))
        results.append((s, mom))
    numba.set_num_threads(1)
    for s, mom in results[1:]:
        np.testing.assert_array_equal(s, results[0][0])
        np.testing.assert_array_equal(mom, results[0][1])


def test_sweep_kernels_are_compiled_noalias():
    """The sweeps vectorize only with numba's `noalias` flag; without it they still work, about
    2.5× slower. Fails if a numba upgrade drops the flag, so the slowdown does not go unseen."""
    assert qus._NOALIAS == {"noalias": True}
    assert qus._sweep_tile.targetoptions.get("noalias") is True
