"""The JupyterLab plugin: installed and enabled by `pip install`, and its unit tests (jest)."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pip_install_gives_jupyterlab_the_enabled_plugin():
    listing = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                             text=True, timeout=120)
    line = next((line for line in (listing.stdout + listing.stderr).splitlines() if "dataharbour-ext" in line), "")
    assert "enabled" in line and "OK" in line, listing.stdout + listing.stderr


def test_the_plugins_data_layer_unit_tests_pass():
    """jest, on the node_modules the package build installed (`jlpm install`)."""
    jlpm = shutil.which("jlpm")
    assert jlpm, "jlpm comes with jupyterlab"
    assert os.path.isdir(os.path.join(ROOT, "node_modules")), "pip install builds the plugin and installs node_modules"
    result = subprocess.run([jlpm, "test", "--ci"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "failed" not in result.stderr.split("Tests:")[-1].split("\n")[0]
