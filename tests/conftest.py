"""Shared test settings.

The reference model's numba kernels run on one thread during tests: on a 2-core machine shared
with TensorFlow's thread pools, barrier-synchronized parallel loops over small tiles spend more
time waiting than computing. The parallel path is checked against the serial one in
``test_reference_transport.py::test_parallel_sweeps_match_serial``.
"""

import numba
import pytest


@pytest.fixture(autouse=True, scope="session")
def _serial_numba():
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)
