"""MFGProblem in 2D: grid, weights, shapes, parameters, obstacles, the registry's 2D entries, and a
ValueError naming the parameter for every bad 2D input."""

import dataclasses
import json

import numpy as np
import pytest

import mfg_core as mc
from mfg_core import methods


def bump(x, y):
    return np.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2) / 0.01)


def make(**kw):
    base = dict(xmin=0.0, xmax=1.0, Nx=10, ymin=0.0, ymax=2.0, Ny=8, T=1.0, Nt=5, sigma=0.3, m0=bump)
    base.update(kw)
    return mc.MFGProblem(**base)


def pillar(x, y):
    return (np.abs(x - 0.7) <= 0.1) & (np.abs(y - 1.2) <= 0.4)


def test_2d_grid_shapes_weights_and_coordinates():
    p = make()
    assert p.dim == 2 and p.x.size == 11 and p.y.size == 9
    assert p.shape == (6, 9, 11) and p.weights.shape == (9, 11)
    assert p.weights.sum() == pytest.approx(2.0)  # the rectangle's area
    assert p.weights[0, 0] == pytest.approx(p.dx * p.dy / 4) and p.weights[0, 5] == pytest.approx(p.dx * p.dy / 2)
    assert p.mass(p.m_init) == pytest.approx(1.0, abs=1e-14)
    assert list(p.coords()) == ["t", "y", "x"]
    q = make(boundary=("periodic", "neumann"))
    assert q.x.size == 10 and q.y.size == 9 and q.boundary == ("periodic", "neumann")
    assert q.grid.axis("x").periodic and not q.grid.axis("y").periodic
    assert make(boundary="periodic").periodic and not q.periodic


def test_callables_take_x_and_y():
    p = make(potential=lambda x, y: x + 10 * y, terminal_cost=lambda x, y: x * y)
    assert np.allclose(p.V, p.x[None, :] + 10 * p.y[:, None])
    assert np.allclose(p.g, p.x[None, :] * p.y[:, None])


def test_obstacle_as_callable_or_mask_is_the_same_frozen_grid():
    p = make(obstacle=pillar)
    mask = np.array(p.grid.obstacle)
    q = make(obstacle=mask)
    assert p.grid == q.grid and hash(p.grid) == hash(q.grid) and p.grid != make().grid
    assert not p.grid.obstacle.flags.writeable
    mask[:] = False  # the caller's array can change; the grid cannot
    assert q.grid.obstacle.any()
    assert np.all(p.m_init[p.grid.obstacle] == 0)
    assert make(obstacle=lambda x, y: x > 5).grid.obstacle is None  # nothing blocked: no obstacle
    params = p.parameters()
    json.dumps(params)
    assert params["dim"] == 2 and params["blocked_nodes"] == int(p.grid.obstacle.sum()) > 0
    assert params["obstacle"].endswith("pillar") and q.parameters()["obstacle"] == "mask"
    assert make().parameters()["obstacle"] == "none"


def test_1d_parameters_have_no_2d_keys():
    p = mc.problems.load("congestion", Nx=10, Nt=5)
    assert "Ny" not in p.parameters() and p.dim == 1 and p.y is None


def test_a_gaussian_tail_inside_the_obstacle_is_dropped_not_refused():
    p = make(Nx=40, Ny=40, m0=lambda x, y: np.exp(-((x - 0.25) ** 2 + (y - 1.0) ** 2) / 0.005), obstacle=pillar)
    assert np.all(p.m_init[p.grid.obstacle] == 0) and p.mass(p.m_init) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("kw, field", [
    (dict(Ny=2), "Ny"),
    (dict(Ny=4.5), "Ny"),
    (dict(ymin=1.0, ymax=1.0), "ymax"),
    (dict(ymin="0"), "ymin"),
    (dict(boundary=("neumann",)), "boundary"),
    (dict(boundary=("neumann", "dirichlet")), "boundary"),
    (dict(boundary=3), "boundary"),
    (dict(obstacle=lambda x, y: np.ones_like(x, dtype=bool)), "obstacle blocks every node"),
    (dict(obstacle=np.ones((9, 11), dtype=bool)), "obstacle blocks every node"),
    (dict(obstacle=lambda x, y: (x > 0.5).astype(float)), "obstacle must return a boolean"),
    (dict(obstacle=np.zeros((11, 9), dtype=bool)), "obstacle must be a callable or a boolean array of the grid"),
    (dict(obstacle=lambda x, y: 1 / 0), "obstacle failed"),
    (dict(obstacle="pillar"), "obstacle"),
    # m0 with its mass inside the obstacle
    (dict(obstacle=lambda x, y: np.abs(x - 0.3) + np.abs(y - 0.4) < 0.25), "m0 has mass inside the obstacle"),
    # a wall across the room: the right part is cut off from where m0 has mass
    (dict(obstacle=lambda x, y: np.abs(x - 0.6) < 0.06 + 0 * y,
          m0=lambda x, y: np.maximum(0.2 - np.hypot(x - 0.3, y - 0.4), 0.0)), "cut off from every node where m0"),
    (dict(m0=lambda x, y: bump(x, y)[:-1]), "m0"),
    (dict(m0=lambda x: x), "m0 failed"),
    (dict(potential=lambda x, y: np.ones(3)), "potential"),
    (dict(terminal_cost=lambda x, y: x * np.nan), "terminal_cost"),
    (dict(m0=lambda x, y: bump(x, y) - 0.5), "m0 must be >= 0"),
    (dict(coupling=lambda m: m[..., :-1]), "coupling"),
    (dict(coupling=lambda m: m, coupling_dm=lambda m: 2 * m), "coupling_dm is not the derivative"),
])
def test_bad_2d_input_raises_value_error_naming_the_parameter(kw, field):
    with pytest.raises(ValueError, match=field):
        with np.errstate(all="ignore"):
            make(**kw)


def test_valid_obstacles_are_not_refused():
    # half the room blocked, m0 in the free half; a wall with a door: one connected free region
    assert make(obstacle=lambda x, y: x > 0.75).grid.obstacle.any()
    door = make(obstacle=lambda x, y: (np.abs(x - 0.6) < 0.06) & (np.abs(y - 1.0) > 0.2),
                m0=lambda x, y: np.maximum(0.2 - np.hypot(x - 0.3, y - 0.4), 0.0))
    assert door.grid.obstacle.sum() > 0


@pytest.mark.parametrize("kw, field", [
    (dict(ymin=0.0), "ymin given without Ny"),
    (dict(ymax=1.0), "ymax given without Ny"),
    (dict(obstacle=lambda x, y: x > 0.5), "obstacle given without Ny"),
    (dict(boundary=("neumann", "neumann")), "boundary"),  # a pair is for 2D
])
def test_2d_arguments_in_1d_are_refused(kw, field):
    with pytest.raises(ValueError, match=field):
        mc.MFGProblem(Nx=10, Nt=5, m0=lambda x: np.ones_like(x), **kw)


def test_memory_check_counts_the_2d_nodes(monkeypatch):
    from mfg_core import problem as problem_module

    monkeypatch.setattr(problem_module, "physical_memory", lambda: 2**30)
    # 1D with Nx = 1000 fits in 1 GiB; the 2D grid 1001 x 1001 x 101 times does not
    mc.MFGProblem(Nx=1000, Nt=100, m0=lambda x: np.ones_like(x))
    with pytest.raises(ValueError, match=r"Nx=1000, Ny=1000, Nt=100 is too large.*1002001 nodes"):
        make(Nx=1000, Ny=1000, Nt=100)


def test_named_2d_problems_and_overrides():
    names = mc.problems.names()
    assert {"lq2d", "stationary_log2d", "evacuation2d"} <= set(names)
    p = mc.problems.load("evacuation2d", Nx=24, Ny=20, kappa=2.0, boundary=("neumann", "periodic"))
    assert p.dim == 2 and p.shape == (p.Nt + 1, 20, 25) and p.params["kappa"] == 2.0
    assert p.grid.obstacle is not None and p.parameters()["blocked_nodes"] > 0
    for name in ("lq2d", "stationary_log2d"):
        q = mc.problems.load(name, Nx=12, Ny=10, Nt=4)
        ex = q.exact_solution()
        assert ex.U.shape == ex.M.shape == q.shape
        assert np.allclose(ex.U[-1], q.g, atol=1e-10)
        assert np.abs(ex.M[0] - q.m_init).max() / ex.M[0].max() < 0.05
    with pytest.raises(ValueError, match="no closed-form"):
        p.exact_solution()
    assert not mc.problems.load("lq2d", Nx=8, Ny=8, obstacle=lambda x, y: x > 1.9).has_exact_solution


def test_lq2d_closed_form_is_the_sum_and_product_of_the_1d_ones():
    p = mc.problems.load("lq2d", Nx=16, Ny=12, Nt=6)
    pr = p.params
    ex = p.exact_solution()
    for axis, nodes, sl in (("x", p.x, (slice(None), 0, slice(None))), ("y", p.y, (slice(None), slice(None), 0))):
        q = mc.problems.load("lq", Nx=nodes.size - 1, Nt=6, xmin=-2.0, xmax=2.0, sigma=p.sigma,
                             q=pr[f"q_{axis}"], g_weight=pr[f"g_{axis}"], x_target=pr[f"target_{axis}"],
                             m0_mean=pr[f"mean_{axis}"], m0_std=pr[f"std_{axis}"])
        one = q.exact_solution()
        assert np.allclose(ex.M[sl], one.M * (ex.M[sl] / one.M)[:, :1], rtol=1e-10)  # product in the other variable
        assert np.allclose(np.diff(ex.U[sl] - one.U, axis=1), 0.0, atol=1e-12)  # sum: offset constant in this one


def test_methods_solve_2d_on_every_backend():
    for kind, name in (("hjb", "fdm"), ("fp", "fdm"), ("fp", "particle"), ("coupling", "damping"),
                       ("coupling", "anderson")):
        m = methods.get(kind, name)
        assert 2 in m.dims and m.runs_on(2) == m.runs_on(1) == m.runs_on()
        for backend in ("numpy", "numba", "jax", "torch"):
            m.check(backend, 2)


def test_a_method_narrowed_in_2d_refuses_the_other_backends_by_name():
    m = dataclasses.replace(methods.get("coupling", "damping"), backends_by_dim={2: ("numpy",)})
    assert m.runs_on(2) == ("numpy",)
    m.check("numpy", 2)
    m.check("jax", 1)
    with pytest.raises(ValueError, match=r"coupling method 'damping' solves 2D problems only on backend\(s\) "
                                         r"\['numpy'\], not on 'jax'"):
        m.check("jax", 2)


def test_solve_2d_result_and_xarray_on_t_y_x():
    p = mc.problems.load("evacuation2d", Nx=12, Ny=10, Nt=6)
    r = mc.solve(p, fp="fdm", coupling="damping", max_iterations=3, tolerance=1e-8)
    assert r.U.shape == r.M.shape == (7, 11, 13)
    ds = r.to_xarray()
    assert ds["u"].dims == ("t", "y", "x") and ds["m"].dims == ("t", "y", "x")
    assert np.array_equal(ds["y"].values, p.y) and np.array_equal(ds["x"].values, p.x)
    assert np.abs(ds["mass"].values - 1).max() < 1e-12
    assert ds.attrs["problem_boundary"] == "neumann" and ds.attrs["problem_dim"] == 2
    assert ds.attrs["problem_Ny"] == 10 and ds.attrs["problem_blocked_nodes"] > 0
