"""tools/floorplan.py: the cycle check counts every import, and the real tree has none."""

from __future__ import annotations

from pathlib import Path

from tools import floorplan


def package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / "llmpulse" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "src"


def test_an_import_inside_a_function_closes_a_cycle(tmp_path: Path) -> None:
    src = package(tmp_path, {
        "__init__.py": "",
        "a.py": "from llmpulse.b import thing\n",
        "b.py": "def thing():\n    from llmpulse import a  # defers, but still an edge\n",
    })  # fmt: skip
    found = floorplan.problems(floorplan.edges(src))
    assert len(found) == 2  # between the two modules, and between them as packages
    assert "llmpulse.a, llmpulse.b" in found[0]
    assert "llmpulse.b:2 -> llmpulse.a (inside a function)" in found[0]


def test_a_cycle_between_packages_is_found_through_their_modules(tmp_path: Path) -> None:
    src = package(tmp_path, {
        "__init__.py": "",
        "x/__init__.py": "",
        "x/one.py": "from llmpulse.y.two import f\n",
        "y/__init__.py": "",
        "y/two.py": "def f(): ...\n",
        "y/three.py": "try:\n    import llmpulse.x.one\nexcept ImportError:\n    pass\n",
    })  # fmt: skip
    found = floorplan.problems(floorplan.edges(src))
    assert len(found) == 1 and found[0].startswith("import cycle between packages llmpulse.x")


def test_type_checking_imports_are_exempt_and_names_resolve_to_modules(tmp_path: Path) -> None:
    src = package(tmp_path, {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from llmpulse import b\n",
        "b.py": "from llmpulse import a, c\nfrom llmpulse.c import name\n",
        "c.py": "name = 1\n",
    })  # fmt: skip
    edges = floorplan.edges(src)
    assert [(e.importer, e.imported) for e in edges] == [
        ("llmpulse.b", "llmpulse.a"),
        ("llmpulse.b", "llmpulse.c"),
        ("llmpulse.b", "llmpulse.c"),
    ]
    assert floorplan.problems(edges) == []


def test_llmpulse_has_no_import_cycle_and_its_map_is_current() -> None:
    assert floorplan.problems(floorplan.edges(floorplan.ROOT / "src")) == []
    assert floorplan.main([]) == 0
