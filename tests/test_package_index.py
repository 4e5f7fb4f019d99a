"""Every module of recnb is named in its package's index docstring, so a reader can find it."""

import pkgutil
import re

import recnb
import recnb.agents


def test_every_module_is_listed_in_its_package_index():
    for package in (recnb, recnb.agents):
        listed = set(re.findall(r"``(?:recnb\.agents\.|recnb\.)?([A-Za-z_]+)``", package.__doc__))
        modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        missing = sorted(modules - listed)
        assert not missing, (
            f"{package.__name__}'s docstring does not mention {missing}: add a line saying what each holds"
        )
