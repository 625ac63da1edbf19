"""The release: a wheel that installs and runs outside the source tree, the changelog of its
version, the public API, and the documentation site, built strictly with the CLI reference
made from the parser."""

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import dla_nas
import dla_nas.analysis
import dla_nas.arch
import dla_nas.backbones
import dla_nas.data
import dla_nas.search
import dla_nas.train
import dla_nas.weights
from dla_nas.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [dla_nas, dla_nas.analysis, dla_nas.arch, dla_nas.backbones, dla_nas.data,
            dla_nas.search, dla_nas.train, dla_nas.weights]


def test_every_public_name_resolves_and_a_plain_import_stays_light():
    for package in PACKAGES:
        assert package.__all__, package.__name__
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
            assert name in dir(package)
    probe = ("import sys, dla_nas, dla_nas.search; "
             "print(sorted(m for m in ('torch', 'optuna', 'ray') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
    # a subpackage or module is an attribute when first read, as after an import of it
    probe = ("import dla_nas\n"
             "print(callable(dla_nas.backbones.efficientnet_lite0),"
             " callable(dla_nas.data.loaders.make_loader))\n"
             "try:\n    dla_nas.nosuch\nexcept AttributeError as e:\n    print(e)\n")
    read = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout
    assert read == "True True\nmodule 'dla_nas' has no attribute 'nosuch'\n"


def test_the_wheel_installs_in_a_fresh_venv_and_runs(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.startswith(f"dla_nas-{dla_nas.__version__}-py3-none-any")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    # the dependencies are this environment's (offline); dla_nas itself is the wheel's
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args):
        return subprocess.run([str(venv / "bin" / "dla-nas"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=True).stdout

    assert "search" in run("--help") and "confirm" in run("--help")
    assert run("--version").strip() == f"dla-nas {dla_nas.__version__}"
    assert '"params": 15742104' in run("show", "dla34", "--json")  # the zoo's YAML is packaged
    where = subprocess.run([str(python), "-c", "import dla_nas; print(dla_nas.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True).stdout
    assert where.startswith(site)


def test_the_changelog_has_the_version_and_the_docs_no_workspace_paths():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(dla_nas.__version__)}\] - \d{{4}}-\d\d-\d\d$",
                     changelog, re.M)
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        assert "../shared" not in page.read_text(), page


def test_the_documentation_site_builds_strictly_with_every_command(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f",
                            str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                           capture_output=True, text=True, env=env, cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    for command in sub.choices:
        assert f"dla-nas {command}" in cli, command
    assert (tmp_path / "site" / "changelog" / "index.html").exists()
