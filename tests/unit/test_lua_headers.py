"""Every Lua script documents its contract in its header, and ``Scripts`` wraps each one."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from leasehold.scheduler import scripts
from leasehold.scheduler.scripts import Scripts, lua_dir, script_names, source

LUA = lua_dir()
NAMES = sorted(script_names())
_SLOT = re.compile(r"^\s+(KEYS|ARGV)\[(\d+)(\.\.)?\]\s+(\w+)", re.MULTILINE)
_INCLUDE_LINE = re.compile(r"^--\s*@include\b.*$", re.MULTILINE)
_LIB_FUNCTION = re.compile(r"^local function (\w+)\(", re.MULTILINE)


@dataclass
class Header:
    summary: str
    keys: list[str]  # the name of each KEYS[i], in order
    argv: list[str]
    variadic_argv: bool
    text: str


def header(name: str) -> Header:
    text = (LUA / f"{name}.lua").read_text()
    match = re.match(r"--\[\[\n(.*?)\n\]\]\n", text, re.DOTALL)
    assert match, f"{name}.lua does not open with a --[[ ... ]] header"
    body = match.group(1)
    slots: dict[str, list[tuple[int, str]]] = {"KEYS": [], "ARGV": []}
    variadic = False
    for kind, index, dots, slot_name in _SLOT.findall(body):
        slots[kind].append((int(index), slot_name))
        if dots:
            assert kind == "ARGV", f"{name}: only ARGV may be variadic"
            variadic = True
    for kind, found in slots.items():
        numbers = [index for index, _ in found]
        assert numbers == list(range(1, len(numbers) + 1)), f"{name}: {kind} numbered {numbers}"
    return Header(summary=body.strip().splitlines()[0], keys=[n for _, n in slots["KEYS"]],
                  argv=[n for _, n in slots["ARGV"]], variadic_argv=variadic, text=body)


def lua_files() -> list[Path]:
    return sorted(LUA.glob("*.lua")) + sorted((LUA / "lib").glob("*.lua"))


@pytest.mark.parametrize("name", NAMES)
def test_header_names_the_script_and_its_contract(name: str) -> None:
    h = header(name)
    assert h.summary.startswith(f"{name}: "), h.summary
    assert h.keys, f"{name}: declares no KEYS"
    for section in ("Returns", "Errors", "Writes", "Cost"):
        assert re.search(rf"^\s+{section}\s+\S", h.text, re.MULTILINE), f"{name}: no {section}"


_BUILT = re.compile(r'\bP \.\. "([\w-]+:?)"')
_ARGV_PREFIX = re.compile(r"\bARGV\[\d+\] \.\. ")


def built_keys(code: str) -> set[str]:
    """Key patterns a piece of Lua builds from the queue prefix ("job:", "meta", ...); the
    pub/sub channels it PUBLISHes on are not keys."""
    lines = [line for line in code.splitlines() if '"PUBLISH"' not in line]
    return set(_BUILT.findall("\n".join(lines)))


def undeclared(built: set[str], declared_text: str) -> set[str]:
    return {name for name in built
            if not re.search(rf"\bP {re.escape(name)}(?![\w-])", declared_text)}


def section(text: str, name: str) -> str:
    """A header section's text, up to the next section."""
    match = re.search(rf"^  {name}\s+(.*?)(?=^  [A-Z]\w+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no {name} section"
    return match.group(1)


# Scripts whose header gains Derived and Bounds together with their pending change of contract.
@pytest.mark.parametrize("name", NAMES)
def test_header_declares_every_key_built_from_the_prefix_and_its_bounds(name: str) -> None:
    h = header(name)
    code = (LUA / f"{name}.lua").read_text().split("]]\n", 1)[1]
    derived = section(h.text, "Derived")
    assert section(h.text, "Bounds").strip(), f"{name}: Bounds is empty"
    missing = undeclared(built_keys(code), derived)
    assert not missing, f"{name}: builds {sorted(missing)} but its Derived section omits them"
    if _ARGV_PREFIX.search(code):
        assert not derived.startswith("none"), f"{name}: builds keys from an ARGV prefix"


@pytest.mark.parametrize("path", sorted((LUA / "lib").glob("*.lua")), ids=lambda p: p.name)
def test_lib_comment_declares_every_key_it_builds(path: str | Path) -> None:
    text = Path(path).read_text()
    comment = "\n".join(line for line in text.splitlines()[:8] if line.startswith("--"))
    assert "Keys built here:" in comment, f"{Path(path).name}: no 'Keys built here:' line"
    missing = undeclared(built_keys(text), comment)
    assert not missing, f"{Path(path).name}: builds {sorted(missing)} but does not declare them"


def test_an_undeclared_key_pattern_is_caught() -> None:
    code = 'redis.call("HSET", P .. "secret:" .. id, "x", 1)\nredis.call("PUBLISH", P .. "due", 1)'
    assert built_keys(code) == {"secret:"}
    assert undeclared(built_keys(code), "P job:<id>  HASH") == {"secret:"}
    assert undeclared(built_keys(code), "P secret:<id>  HASH") == set()


@pytest.mark.parametrize("name", NAMES)
def test_body_uses_only_declared_keys_and_argv(name: str) -> None:
    h = header(name)
    code = (LUA / f"{name}.lua").read_text().split("]]\n", 1)[1]
    for index in map(int, re.findall(r"KEYS\[(\d+)\]", code)):
        assert 1 <= index <= len(h.keys), f"{name}: KEYS[{index}] is not declared"
    for index in map(int, re.findall(r"ARGV\[(\d+)\]", code)):
        assert 1 <= index <= len(h.argv), f"{name}: ARGV[{index}] is not declared"


def test_every_script_has_a_wrapper_and_every_wrapper_a_script() -> None:
    methods = {
        name for name, member in inspect.getmembers(Scripts, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in ("load", "many")
    }
    assert not set(NAMES) - methods, f"scripts without a wrapper: {set(NAMES) - methods}"
    assert not methods - set(NAMES), f"wrappers without a script: {methods - set(NAMES)}"


@pytest.mark.parametrize("path", lua_files(), ids=lambda p: p.name)
def test_every_include_names_an_existing_lib(path: Path) -> None:
    for line in _INCLUDE_LINE.findall(path.read_text()):
        assert scripts._INCLUDE.fullmatch(line), f"{path.name}: {line!r} would not be expanded"
        lib = line.split()[-1]
        assert (LUA / "lib" / f"{lib}.lua").is_file(), f"{path.name}: no lib/{lib}.lua"


@pytest.mark.parametrize("name", NAMES)
def test_lib_functions_a_script_calls_are_defined_before_use(name: str) -> None:
    expanded = source(name)
    assert "@include" not in expanded
    libs = {m for p in (LUA / "lib").glob("*.lua") for m in _LIB_FUNCTION.findall(p.read_text())}
    for function in sorted(libs):
        calls = [m.start() for m in re.finditer(rf"(?<![\w.:]){function}\(", expanded)]
        definition = expanded.find(f"local function {function}(")
        uses = [pos for pos in calls if pos != definition + len("local function ")]
        if uses:
            assert 0 <= definition < min(uses), f"{name}: {function}() used before its include"


# -- the wrappers pass what the headers declare, in the declared order ---------------------------


def _wrapper_calls() -> dict[str, tuple[list[ast.expr], ast.expr, ast.expr]]:
    """Per Scripts method: what its body appends to its args, its keys, and its args."""
    tree = ast.parse(inspect.getsource(scripts))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Scripts")
    found: dict[str, tuple[list[ast.expr], ast.expr, ast.expr]] = {}
    for method in cls.body:
        if not isinstance(method, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(method):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_call"):
                name = node.args[0]
                assert isinstance(name, ast.Constant) and isinstance(name.value, str), method.name
                assert name.value == method.name, f"{method.name} runs {name.value}.lua"
                keys = _resolve(method, node.args[1])
                args = _resolve(method, node.args[2])
                extended = [n.value for n in ast.walk(method)
                            if isinstance(n, ast.AugAssign) and _named(n.target, node.args[2])]
                found[method.name] = (extended, keys, args)
    return found


def _named(target: ast.expr, ref: ast.expr) -> bool:
    return isinstance(target, ast.Name) and isinstance(ref, ast.Name) and target.id == ref.id


def _resolve(method: ast.AsyncFunctionDef, expr: ast.expr) -> ast.expr:
    """The list literal a local name was assigned, or the expression itself."""
    if not isinstance(expr, ast.Name):
        return expr
    for node in ast.walk(method):
        if isinstance(node, ast.Assign) and any(_named(t, expr) for t in node.targets):
            return node.value
        if isinstance(node, ast.AnnAssign) and _named(node.target, expr) and node.value:
            return node.value
    raise AssertionError(f"{method.name}: cannot find {expr.id}")


def _key_name(element: ast.expr) -> str:
    if isinstance(element, ast.Call):
        element = element.func
    assert isinstance(element, ast.Attribute), ast.dump(element)
    return element.attr


WRAPPERS = _wrapper_calls()


@pytest.mark.parametrize("name", NAMES)
def test_wrapper_passes_the_declared_keys_in_order(name: str) -> None:
    assert name in WRAPPERS, f"Scripts has no {name}() running {name}.lua"
    _, keys, _ = WRAPPERS[name]
    assert isinstance(keys, ast.List), f"{name}: keys are not a list literal"
    passed = [_key_name(element) for element in keys.elts]
    declared = header(name).keys
    assert len(passed) == len(declared), f"{name}: passes {passed}, declares {declared}"
    queue_keys = {"meta", "labelsets", "delayed", "leases", "index", "done", "stats", "events",
                  "rate"}
    for got, want in zip(passed, declared, strict=True):
        if got in queue_keys or want in queue_keys:
            assert got == want, f"{name}: passes {passed}, declares {declared}"


@pytest.mark.parametrize("name", NAMES)
def test_wrapper_passes_the_declared_argv_count(name: str) -> None:
    assert name in WRAPPERS, f"Scripts has no {name}() running {name}.lua"
    extended, _, args = WRAPPERS[name]
    h = header(name)
    assert isinstance(args, ast.List), f"{name}: args are not a list literal"
    fixed = 0
    for element in args.elts:
        if isinstance(element, ast.Starred):
            break
        fixed += 1
    repeated = re.search(r"^\s+then per \w+", h.text, re.MULTILINE) is not None
    if fixed < len(args.elts) or extended:
        # A variable tail: ARGV[n..] right after the fixed ones, or "then per <item>: ..." text.
        declared = len(h.argv) - 1 if h.variadic_argv else len(h.argv)
        assert h.variadic_argv or repeated, f"{name}: the header does not describe the tail"
        assert declared == fixed, f"{name}: passes {fixed} fixed ARGV, declares {h.argv}"
    else:
        assert not (h.variadic_argv or repeated), f"{name}: declares a tail it is never passed"
        assert len(h.argv) == fixed, f"{name}: passes {fixed} ARGV, declares {h.argv}"
