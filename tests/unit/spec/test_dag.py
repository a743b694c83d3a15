"""Step and pipeline graphs: sequential and DAG modes, detached steps, cycles, order."""

from __future__ import annotations

import pytest

from bastion.spec.dag import (
    bypass,
    duplicates,
    find_cycle,
    find_unknown,
    step_dependencies,
    topological_order,
)

# -- step_dependencies -----------------------------------------------------------------------


def test_sequential_when_no_step_declares_depends_on() -> None:
    assert step_dependencies(["build", "test", "publish"], {}) == {
        "build": (),
        "test": ("build",),
        "publish": ("test",),
    }


def test_empty_declarations_still_mean_sequential() -> None:
    deps = step_dependencies(["a", "b"], {"a": [], "b": ()})
    assert deps == {"a": (), "b": ("a",)}


def test_dag_mode_as_soon_as_one_step_declares() -> None:
    deps = step_dependencies(
        ["build", "lint", "test", "publish"],
        {"test": ["build"], "publish": ["test", "lint"]},
    )
    # lint and build declare nothing: in DAG mode they start at once
    assert deps == {
        "build": (),
        "lint": (),
        "test": ("build",),
        "publish": ("test", "lint"),
    }


def test_diamond() -> None:
    deps = step_dependencies(["a", "b", "c", "d"], {"b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert deps == {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
    assert topological_order(deps) == ["a", "b", "c", "d"]
    assert find_cycle(deps) is None
    assert find_unknown(deps) == []


def test_repeated_dependencies_are_kept_once() -> None:
    assert step_dependencies(["a", "b"], {"b": ["a", "a"]}) == {"a": (), "b": ("a",)}


def test_unknown_and_self_dependencies_are_kept_for_reporting() -> None:
    deps = step_dependencies(["a", "b"], {"a": ["a"], "b": ["nope"]})
    assert deps == {"a": ("a",), "b": ("nope",)}
    assert find_unknown(deps) == [("b", "nope")]
    assert find_cycle(deps) == ["a", "a"]


def test_detached_step_in_sequential_mode_does_not_block_the_next() -> None:
    # Drone starts a detached step in the background and carries on: "test" waits for
    # "build", not for the database to exit.
    deps = step_dependencies(["build", "database", "test"], {}, frozenset({"database"}))
    assert deps == {"build": (), "database": ("build",), "test": ("build",)}
    # both become ready after build; the detached step is started first
    assert topological_order(deps) == ["build", "database", "test"]


def test_detached_step_in_dag_mode() -> None:
    deps = step_dependencies(
        ["setup", "server", "e2e"],
        {"server": ["setup"], "e2e": ["server"]},
        frozenset({"server"}),
    )
    assert deps == {"setup": (), "server": ("setup",), "e2e": ("setup",)}


def test_detached_self_dependency_is_still_a_cycle() -> None:
    deps = step_dependencies(["d"], {"d": ["d"]}, frozenset({"d"}))
    assert find_cycle(deps) == ["d", "d"]


# -- bypass (pipelines skipped by their trigger) ---------------------------------------------


def test_bypass_is_transitive_like_drones_dag() -> None:
    deps = {"a": (), "b": ("a",), "c": ("b",), "d": ("c", "a")}
    assert bypass(deps, {"b", "c"}) == {"a": (), "b": ("a",), "c": ("a",), "d": ("a",)}


def test_bypass_of_a_root_frees_its_dependents() -> None:
    assert bypass({"a": (), "b": ("a",)}, {"a"}) == {"a": (), "b": ()}


def test_bypass_keeps_cycles_and_unknown_names() -> None:
    deps = {"a": ("b",), "b": ("a",), "c": ("x",)}
    result = bypass(deps, {"b"})
    assert find_cycle(result) is not None
    assert result["c"] == ("x",)


# -- find_cycle ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deps", "cycle"),
    [
        ({"a": ()}, None),
        ({"a": ("a",)}, ["a", "a"]),
        ({"a": ("b",), "b": ("a",)}, ["a", "b", "a"]),
        ({"a": ("b",), "b": ("c",), "c": ("d",), "d": ("b",)}, ["b", "c", "d", "b"]),
        ({"x": (), "a": ("x", "b"), "b": ("c",), "c": ("a",)}, ["a", "b", "c", "a"]),
        ({"a": ("missing",)}, None),  # unknown names are find_unknown's business
    ],
)
def test_find_cycle(deps: dict[str, tuple[str, ...]], cycle: list[str] | None) -> None:
    assert find_cycle(deps) == cycle


def test_find_cycle_is_deterministic_and_iterative() -> None:
    # A 5000-step chain closing on itself: no recursion limit, same answer every time.
    names = [f"s{i}" for i in range(5000)]
    deps = {name: (names[i - 1],) if i else (names[-1],) for i, name in enumerate(names)}
    first = find_cycle(deps)
    assert first is not None
    assert first[0] == first[-1]
    assert len(first) == 5001
    assert find_cycle(deps) == first


# -- topological_order -----------------------------------------------------------------------


def test_order_is_stable_among_ready_nodes() -> None:
    assert topological_order({"c": (), "a": (), "b": ()}) == ["c", "a", "b"]
    deps = {"deploy": ("test",), "test": (), "docs": (), "lint": ()}
    assert topological_order(deps) == ["test", "deploy", "docs", "lint"]


def test_order_puts_dependencies_first() -> None:
    deps = {"publish": ("test", "build"), "test": ("build",), "build": ()}
    assert topological_order(deps) == ["build", "test", "publish"]


def test_order_raises_on_cycle() -> None:
    with pytest.raises(ValueError, match=r"dependency cycle: a -> b -> a"):
        topological_order({"a": ("b",), "b": ("a",), "c": ()})


def test_order_raises_on_unknown_dependency() -> None:
    with pytest.raises(ValueError, match="'a' depends on 'ghost', which does not exist"):
        topological_order({"a": ("ghost",)})


# -- duplicates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], []),
        (["a", "b"], []),
        (["a", "b", "a"], ["a"]),
        (["b", "a", "a", "b", "b"], ["a", "b"]),  # in order of first repetition, once each
    ],
)
def test_duplicates(names: list[str], expected: list[str]) -> None:
    assert duplicates(names) == expected
