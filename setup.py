"""setuptools' hook for one thing pyproject.toml cannot say: the wheel
carries the top-level template and emulator folders (builder/resources.py
FOLDERS) inside the builder package, where builder.resources finds them.
Everything else is in pyproject.toml."""

import ast
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")


def folders():
    """builder/resources.py's FOLDERS, read from its source (builder is not importable while it builds)."""
    tree = ast.parse((HERE / "builder" / "resources.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FOLDERS")


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "builder" / "resources"
        for folder in folders():
            shutil.copytree(HERE / folder, target / folder, ignore=SKIPPED, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithResources})
