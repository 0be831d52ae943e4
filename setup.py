"""Package list for setuptools; everything else is in setup.cfg.

setup.cfg's ``find:`` cannot list the definition folders, which are mapped into
the wheel as ``promoflow_library.*`` (``package_dir`` in setup.cfg), so the
list is made here.
"""

from setuptools import find_packages, setup

LIBRARY = ["promoflow_library.forms", "promoflow_library.workflows", "promoflow_library.config"]

setup(packages=find_packages(include=["engine", "engine.*", "connectors", "connectors.*", "web", "web.*"]) + LIBRARY)
