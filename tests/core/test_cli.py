"""The command line as a user meets it: help, version, the platform/ folder, scaffolding a plugin."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_help_and_version(plinth_cmd):
    res = plinth_cmd("--help")
    assert res.returncode == 0
    for verb in ("plugins", "registry", "validate", "run", "new-plugin", "install", "uninstall"):
        assert verb in res.stdout
    res = plinth_cmd("--version")
    assert res.returncode == 0 and res.stdout.startswith("plinth 0.")
    for verb in ("run", "validate", "registry", "plugins", "new-plugin", "install"):
        res = plinth_cmd(verb, "--help")
        assert res.returncode == 0 and "usage: plinth" in res.stdout


def test_core_import_is_light():
    code = (
        "import sys, plinth, plinth.cli, plinth.pipeline, plinth.runner, plinth.plugins; "
        "print(' '.join(m for m in ('torch', 'transformers', 'trl', 'deepspeed', 'datasets') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_platform_folder_does_not_shadow_the_standard_library():
    assert not (REPO / "platform" / "__init__.py").exists()
    code = "import platform, plinth; print(platform.system(), platform.__file__)"
    for extra in ("", str(REPO), str(REPO / "platform")):
        env = dict(os.environ, PYTHONPATH=extra)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
        assert res.returncode == 0, res.stderr
        system, path = res.stdout.split()
        assert system == "Linux" and not path.startswith(str(REPO))


def test_new_plugin_scaffold_installs_registers_and_passes_its_test(tmp_path, plinth_cmd):
    res = plinth_cmd("new-plugin", "my-trainer", "--dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    root = tmp_path / "plinth-my-trainer"
    assert (root / "pyproject.toml").exists() and (root / "plinth_my_trainer" / "plugin.py").exists()
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(root)],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(target), "PLINTH_PLUGINS": "my-trainer"}
    res = plinth_cmd("plugins", "--json", env=env)
    assert '"trainer": [\n          "my-trainer"' in res.stdout
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True, text=True, env=dict(os.environ, **env), cwd=tmp_path,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout
    res = plinth_cmd("new-plugin", "my-trainer", "--dir", str(tmp_path))
    assert res.returncode == 2 and "already exists" in res.stderr
    res = plinth_cmd("new-plugin", "Bad_Name", "--dir", str(tmp_path))
    assert res.returncode == 2 and "lower-case" in res.stderr


def test_install_and_uninstall_into_plinths_environment(tmp_path, plinth_cmd):
    plinth_cmd("new-plugin", "install-probe", "--slot", "evaluator", "--dir", str(tmp_path))
    try:
        res = plinth_cmd("install", "--no-build-isolation-is-not-a-flag", str(tmp_path / "plinth-install-probe"))
        assert res.returncode == 2  # argparse rejects unknown flags before pip runs
        res = plinth_cmd("install", str(tmp_path / "plinth-install-probe"), timeout=600)
        assert res.returncode == 0, res.stderr
        res = plinth_cmd("plugins", "--json")
        assert '"evaluator": [\n          "install-probe"' in res.stdout
    finally:
        res = plinth_cmd("uninstall", "-y", "plinth-install-probe")
    assert res.returncode == 0, res.stderr
    assert "install-probe" not in plinth_cmd("plugins", "--json").stdout


def test_loading_every_installed_plugin_stays_light():
    """Plugins register lazy references, so `plinth --help` imports none of their heavy modules."""
    code = (
        "import sys; from plinth.plugins import load_plugins; pm = load_plugins(); "
        "assert not [p for p in pm.plugins if p.error], [p.error for p in pm.plugins if p.error]; "
        "print(' '.join(m for m in ('torch', 'transformers', 'trl', 'deepspeed', 'datasets', 'numpy', 'pydantic') "
        "if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PLINTH_PLUGINS", "PYTHONPATH")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
