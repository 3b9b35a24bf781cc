"""wmlib.esstate: pycma's CMA-ES state stored as data (arrays + JSON) that loading cannot run code from. Real pycma
states at the paper's size, the smoke preset's and a small one run for many generations: a state saved mid-run goes
on bit-identically; a file naming anything outside the allowlists, or damaged, is refused naming the file."""

import io
import json
import os
import pickle

import cma
import numpy as np
import pytest

from wmlib import esstate

# (dimension, population, generations before the save): pycma picks other classes for large and small dimensions
# (TPA or CSA step-size adaptation) and populations (an archive or none); 867 and 1088 are C's sizes for CarRacing
# and Doom with the paper's V and M (the smoke preset keeps those sizes, with 4 candidates).
CASES = {"paper size": (867, 64, 3), "smoke size": (1088, 4, 5), "small, long": (10, 4, 300)}


def fitness(generation: int, solutions) -> list:
    """A noisy sphere, the same for every strategy at the same generation."""
    noise = np.random.default_rng(generation).normal(size=len(solutions))
    return [float(np.sum(np.asarray(x) ** 2) + e) for x, e in zip(solutions, noise)]


def strategy(n: int, pop: int, generations: int) -> cma.CMAEvolutionStrategy:
    es = cma.CMAEvolutionStrategy(np.zeros(n), 0.1, {"popsize": pop, "seed": 2, "verbose": -9, "signals_filename": ""})
    for g in range(generations):
        x = es.ask()
        es.tell(x, fitness(g, x))
    return es


def document(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return json.loads(z[esstate.DOCUMENT].tobytes())


def named(node, kinds=("object", "class", "function")) -> set:
    """The class and function names a document uses."""
    if isinstance(node, list):
        return set().union(*map(named, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    own = {node.get("class") or node.get("name")} if node.get("t") in kinds else set()
    return own.union(*(named(v) for k, v in node.items() if k not in ("t", "class", "name")))


def crafted(root, arrays=None) -> bytes:
    """An .npz in the state format (a valid checksum) whose document's root is ``root``."""
    doc = json.dumps(dict(format=esstate.FORMAT, version=esstate.VERSION, root=root)).encode()
    entries = {esstate.DOCUMENT: np.frombuffer(doc, np.uint8), **(arrays or {})}
    entries[esstate.CHECKSUM] = np.frombuffer(esstate.checksum(entries).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(CASES))
def test_a_state_saved_mid_run_goes_on_bit_identically(case):
    n, pop, before = CASES[case]
    es = strategy(n, pop, before)
    saved_rng = np.random.get_state()
    data = esstate.dumps(dict(es=es, rows=[dict(generation=1, sigma=0.1, eval_mean="")], best=-np.inf))
    after = 3 if n > 100 else 20
    asked = []
    for g in range(before, before + after):  # the uninterrupted strategy
        x = es.ask()
        asked.append(x)
        es.tell(x, fitness(g, x))
    np.random.seed(12345)  # numpy's global generator, which pycma draws from, moves on meanwhile
    state = esstate.loads(data)
    rng = np.random.get_state()
    assert rng[0] == saved_rng[0] and np.array_equal(rng[1], saved_rng[1]) and rng[2:] == saved_rng[2:]
    assert esstate.dumps(state) == data  # the same state, to the byte
    assert state["rows"] == [dict(generation=1, sigma=0.1, eval_mean="")] and state["best"] == -np.inf
    loaded = state["es"]
    assert loaded.logger.es is loaded  # a reference back to the strategy stays one
    assert loaded.opts["randn"].__self__ is np.random.randn.__self__  # it draws from numpy's generator again
    for g, expected in zip(range(before, before + after), asked):
        x = loaded.ask()
        assert all(np.array_equal(a, b) for a, b in zip(x, expected)), f"generation {g}"
        loaded.tell(x, fitness(g, x))
    assert np.array_equal(loaded.mean, es.mean) and loaded.sigma == es.sigma
    assert np.array_equal(loaded.sm.C, es.sm.C)


def test_the_allowlists_hold_what_real_states_hold_and_run_no_code_on_load():
    used = set()
    for n, pop, generations in [(867, 64, 1), (1088, 4, 1), (10, 4, 300)]:
        used |= named(document(esstate.dumps(strategy(n, pop, generations))))
    assert used == set(esstate.CLASSES) | set(esstate.FUNCTIONS)  # nothing listed that a state does not hold
    for cls in esstate.CLASSES.values():  # rebuilt with cls.__new__ and __dict__: nothing of theirs runs
        for klass in cls.__mro__:
            if klass in (object, dict, list):
                continue
            own = {
                "__new__",
                "__del__",
                "__getattr__",
                "__getattribute__",
                "__setattr__",
                "__setstate__",
                "__reduce__",
                "__reduce_ex__",
            } & set(vars(klass))
            assert not own, (cls, klass, own)


def test_what_a_state_does_not_hold_cannot_be_saved_and_is_named():
    with pytest.raises(TypeError, match=r"state\['hook'\]: the function or method 'system' cannot be stored"):
        esstate.dumps(dict(hook=os.system))
    with pytest.raises(TypeError, match=r"state\['x'\]\[1\]: a collections.OrderedDict cannot be stored"):
        esstate.dumps(dict(x=[1, __import__("collections").OrderedDict()]))
    with pytest.raises(TypeError, match=r"state\['a'\]: a numpy.ndarray of dtype object cannot be stored"):
        esstate.dumps(dict(a=np.array([None])))
    es = strategy(4, 4, 1)
    dict.__setitem__(es.opts, "CMA_eigenmethod", np.linalg.svd)
    with pytest.raises(TypeError, match=r"state\.opts\['CMA_eigenmethod'\]: a numpy\._ArrayFunctionDispatcher"):
        esstate.dumps(es)


def test_plain_values_keep_their_types_and_shared_objects_stay_shared():
    shared = np.arange(3.0)
    box = [shared]
    value = dict(
        a=shared,
        b=box,
        c=box,
        d=(1, 2.5, "x", None, True),
        e={(1, "k"): float("nan"), 2: -np.inf},
        f=np.float64(0.1),
        g=np.int64(7),
        h=np.bool_(True),
        i=range(2, 9, 3),
        j=np.zeros((2, 3), order="F"),
    )
    back = esstate.loads(esstate.dumps(value))
    assert back["a"] is back["b"][0] and back["b"] is back["c"] and np.array_equal(back["a"], shared)
    assert back["d"] == (1, 2.5, "x", None, True) and type(back["d"][1]) is float
    assert np.isnan(back["e"][(1, "k")]) and back["e"][2] == -np.inf
    assert type(back["f"]) is np.float64 and back["f"] == 0.1 and type(back["g"]) is np.int64 and back["h"]
    assert back["i"] == range(2, 9, 3) and back["j"].flags.f_contiguous


@pytest.mark.parametrize(
    "root, refused",
    [
        ({"t": "function", "name": "os.system"}, "the function 'os.system'"),
        ({"t": "function", "name": "builtins.getattr"}, "the function 'builtins.getattr'"),
        ({"t": "class", "name": "subprocess.Popen"}, "the class 'subprocess.Popen'"),
        (
            {"t": "object", "id": 0, "class": "subprocess.Popen", "attrs": [["args", "touch x"]]},
            "the class 'subprocess.Popen'",
        ),
        (
            {"t": "dict", "id": 0, "items": [["ok", 1], ["hook", {"t": "function", "name": "posix.system"}]]},
            "the function 'posix.system'",
        ),
        (
            {"t": "method", "name": "__reduce__", "self": {"t": "function", "name": "numpy.linalg.eigh"}},
            "the method 'numpy._ArrayFunctionDispatcher.__reduce__'",
        ),
        ({"t": "pickle", "v": "cos\nsystem\n"}, "an entry of unknown type 'pickle'"),
    ],
)
def test_a_file_naming_anything_outside_the_allowlists_is_refused_naming_it_and_the_file(tmp_path, root, refused):
    path = tmp_path / "es_state.npz"
    good = np.random.RandomState(3).get_state()
    # a global random state first: it would be set, if loading did not stop before anything takes effect
    path.write_bytes(
        crafted(
            {
                "t": "list",
                "id": 9,
                "items": [
                    {
                        "t": "random_state",
                        "id": 8,
                        "global": True,
                        "state": {
                            "t": "tuple",
                            "items": ["MT19937", {"t": "array", "id": 7, "entry": "k"}, int(good[2]), 0, 0.0],
                        },
                    },
                    root,
                ],
            },
            {"k": good[1]},
        )
    )
    before = np.random.get_state()
    with pytest.raises(ValueError) as err:
        esstate.load(path)
    assert str(err.value).startswith(f"{path}: ") and refused in str(err.value) and "\n" not in str(err.value)
    assert np.array_equal(np.random.get_state()[1], before[1])  # nothing took effect


def test_a_pickle_is_not_a_state_and_is_not_unpickled(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').close()",)

    path = tmp_path / "es_state.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match=f"^{path}: not a readable CMA-ES state"):
        esstate.load(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: unpickling it does run code
    assert marker.exists()


def test_a_damaged_file_is_refused_naming_it(tmp_path):
    es = strategy(10, 4, 30)
    data = esstate.dumps(dict(es=es))
    path = tmp_path / "es_state.npz"
    at = data.index(es.sm.C.tobytes()) + 37  # a byte inside the covariance matrix
    for where in [at, data.index(b'"format"'), len(data) // 2, len(data) - 30]:
        damaged = bytearray(data)
        damaged[where] = 0 if damaged[where] else 1
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=f"^{path}: "):
            esstate.load(path)
    # whichever byte is zeroed, the file is refused, or (a byte of the zip's bookkeeping that no content depends
    # on) loads to the very state that was saved: never to another one
    refused = 0
    for where in range(0, len(data), 97):
        if data[where]:
            damaged = bytearray(data)
            damaged[where] = 0
            path.write_bytes(bytes(damaged))
            try:
                state = esstate.load(path)
            except ValueError as exc:
                assert str(exc).startswith(f"{path}: ")
                refused += 1
            else:
                assert esstate.dumps(state) == data, where
    assert refused > 0
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=f"^{path}: not a readable CMA-ES state"):
        esstate.load(path)


def test_an_altered_array_fails_the_checksum(tmp_path):
    data = esstate.dumps(dict(x=np.arange(4.0)))
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    entries["a0"] = entries["a0"] + 1  # rewritten as a valid zip, the checksum left as it was
    buf = io.BytesIO()
    np.savez(buf, **entries)
    path = tmp_path / "es_state.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=f"^{path}: checksum mismatch"):
        esstate.load(path)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        esstate.load(tmp_path / "nowhere.npz")
