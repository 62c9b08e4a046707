"""ModelE latitude-longitude grids and the E3 vertical coordinate.

Horizontal (ModelE ``GEOM_B``): ``JM`` latitude rows, ``IM`` longitudes. The two pole rows are
polar caps spanning 88°–90°; the ``JM − 2`` interior rows are equally wide between −88° and 88°.
For 2°×2.5° (90×144) the centres are −90, −87, −85, …, 85, 87, 90; for 4°×5° (46×72) they are
−90, −86, −82, …, 86, 90. Longitudes are cell centres −180 + Δλ/2 … 180 − Δλ/2.

A polar cap is one cell in the physics; files store it repeated over the ``IM`` longitudes, each
copy holding ``1/IM`` of the cap area (so ``axyp`` sums to the area of the sphere).

Vertical: sigma layers over a reference surface pressure of 984 hPa below ``P_TOP`` = 150 hPa.
The edges of layers 1–20 are those of the 62-layer E3 column (``docs/data_contract.md``); above them
a few coarser buffer layers reach 150 hPa so that tracer lifted out of layer 20 is kept, not lost
through a lid. ``p_edge = P_TOP + σ (p_s − P_TOP)``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

EARTH_RADIUS = 6.371e6  # m, ModelE's RADIUS
GRAVITY = 9.80665  # m s-2, ModelE's GRAV
P_REF = 984.0  # hPa, reference surface pressure of the E3 sigma layers
P_TOP = 150.0  # hPa, top of the sigma domain (ModelE's PTOP)
POLAR_CAP_EDGE = 88.0  # degrees, equatorward edge of the polar-cap rows

#: Edges (hPa, at p_s = 984) of E3 layers 1–20 (``docs/data_contract.md``).
E3_EDGES_1_20 = (
    984.0, 974.0, 964.0, 954.0, 944.0, 934.0, 924.0, 914.0, 904.0, 894.0, 883.0,
    871.0, 857.0, 840.0, 820.0, 797.0, 771.0, 742.0, 710.0, 675.0, 637.0,
)  # fmt: skip
#: Buffer layers above layer 20, up to P_TOP; tracer above 637 hPa stays in the model.
BUFFER_EDGES = (560.0, 470.0, 370.0, 260.0, P_TOP)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A ModelE horizontal grid.

    Attributes:
        name: preset name.
        jm: number of latitude rows, pole caps included.
        im: number of longitudes.
    """

    name: str
    jm: int
    im: int

    def __post_init__(self):
        if self.jm < 4 or self.im < 4 or self.im % 2:
            raise ValueError(
                "`jm` must be >= 4 and `im` an even number >= 4. "
                f"Received: jm={self.jm}, im={self.im}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(jm, im)``: ``(H, W)`` in the emulator's terms."""
        return (self.jm, self.im)

    @property
    def dlat(self) -> float:
        """Width of an interior row, degrees."""
        return 2 * POLAR_CAP_EDGE / (self.jm - 2)

    @property
    def dlon(self) -> float:
        """Width of a column, degrees."""
        return 360.0 / self.im

    @functools.cached_property
    def lat_edges(self) -> np.ndarray:
        """``(jm + 1,)`` row edges, degrees, south to north."""
        interior = np.linspace(-POLAR_CAP_EDGE, POLAR_CAP_EDGE, self.jm - 1)
        return np.concatenate([[-90.0], interior, [90.0]])

    @functools.cached_property
    def lat(self) -> np.ndarray:
        """``(jm,)`` row centres, degrees; ±90 for the caps."""
        centres = 0.5 * (self.lat_edges[:-1] + self.lat_edges[1:])
        centres[0], centres[-1] = -90.0, 90.0
        return centres

    @functools.cached_property
    def lon_edges(self) -> np.ndarray:
        """``(im + 1,)`` column edges, degrees, −180 … 180."""
        return np.linspace(-180.0, 180.0, self.im + 1)

    @functools.cached_property
    def lon(self) -> np.ndarray:
        """``(im,)`` column centres, degrees."""
        return 0.5 * (self.lon_edges[:-1] + self.lon_edges[1:])

    @functools.cached_property
    def row_area(self) -> np.ndarray:
        """``(jm,)`` area of one cell of each row, m²; a cap row's cell holds 1/im of the cap."""
        sin_edges = np.sin(np.deg2rad(self.lat_edges))
        return EARTH_RADIUS**2 * np.deg2rad(self.dlon) * np.diff(sin_edges)

    @functools.cached_property
    def area(self) -> np.ndarray:
        """``(jm, im)`` cell area ``axyp``, m²; sums to 4πa²."""
        return np.repeat(self.row_area[:, None], self.im, axis=1)

    @functools.cached_property
    def dx_edges(self) -> np.ndarray:
        """``(jm + 1,)`` length of a cell's south/north face at each row edge, m."""
        return EARTH_RADIUS * np.cos(np.deg2rad(self.lat_edges)) * np.deg2rad(self.dlon)

    @functools.cached_property
    def dy(self) -> np.ndarray:
        """``(jm,)`` meridional extent of each row, m (the length of an east/west face)."""
        return EARTH_RADIUS * np.deg2rad(np.diff(self.lat_edges))


GRIDS: dict[str, Grid] = {
    "native": Grid("native", jm=90, im=144),  # 2° × 2.5°
    "coarse": Grid("coarse", jm=46, im=72),  # 4° × 5°
    # Not ModelE resolutions: fast tests only.
    "small": Grid("small", jm=24, im=36),  # 8° × 10°: whole reference-model runs in tests
    "tiny": Grid("tiny", jm=6, im=8),  # dummy data of the TFDS builder
}


def get_grid(name: str) -> Grid:
    """Returns the grid `name`: ``"native"`` (2°×2.5°), ``"coarse"`` (4°×5°), or the test grids
    ``"small"`` (8°×10°) and ``"tiny"`` (6×8 cells)."""
    try:
        return GRIDS[name]
    except KeyError:
        raise ValueError(
            f"`name` must be one of {sorted(GRIDS)}. Received: name={name!r}"
        ) from None


@dataclasses.dataclass(frozen=True)
class VerticalGrid:
    """Sigma layers of the model column: E3 layers 1..20, then buffer layers to ``P_TOP``.

    Attributes:
        n_output: number of lowest layers written to files (``L``, at most 20).
    """

    n_output: int = 20

    def __post_init__(self):
        if not 1 <= self.n_output <= len(E3_EDGES_1_20) - 1:
            raise ValueError(
                f"`n_output` must be between 1 and {len(E3_EDGES_1_20) - 1}. "
                f"Received: n_output={self.n_output}"
            )

    @functools.cached_property
    def edges_ref(self) -> np.ndarray:
        """``(n_layers + 1,)`` layer edges at the reference surface pressure, hPa, bottom up."""
        return np.array(E3_EDGES_1_20 + BUFFER_EDGES)

    @property
    def n_layers(self) -> int:
        """Number of layers simulated (output layers plus buffer layers)."""
        return len(self.edges_ref) - 1

    @functools.cached_property
    def sigma_edges(self) -> np.ndarray:
        """``(n_layers + 1,)`` σ at layer edges: 1 at the surface, 0 at ``P_TOP``."""
        return (self.edges_ref - P_TOP) / (P_REF - P_TOP)

    @functools.cached_property
    def dsigma(self) -> np.ndarray:
        """``(n_layers,)`` σ thickness of each layer (positive)."""
        return -np.diff(self.sigma_edges)

    @functools.cached_property
    def sigma_mid(self) -> np.ndarray:
        """``(n_layers,)`` σ at the layer mid-points."""
        return 0.5 * (self.sigma_edges[:-1] + self.sigma_edges[1:])

    def edge_pressure(self, ps: np.ndarray) -> np.ndarray:
        """Layer edge pressures, hPa: ``(n_layers + 1, *ps.shape)`` for surface pressure `ps`."""
        ps = np.asarray(ps, np.float64)
        return P_TOP + self.sigma_edges.reshape((-1,) + (1,) * ps.ndim) * (ps - P_TOP)

    def mid_pressure(self, ps: np.ndarray) -> np.ndarray:
        """Mid-layer pressures, hPa: ``(n_layers, *ps.shape)``."""
        ps = np.asarray(ps, np.float64)
        return P_TOP + self.sigma_mid.reshape((-1,) + (1,) * ps.ndim) * (ps - P_TOP)

    def air_mass(self, ps: np.ndarray) -> np.ndarray:
        """Air mass per unit area of each layer, kg/m²: ``(n_layers, *ps.shape)``."""
        ps = np.asarray(ps, np.float64)
        dp = self.dsigma.reshape((-1,) + (1,) * ps.ndim) * (ps - P_TOP) * 100.0  # Pa
        return dp / GRAVITY
