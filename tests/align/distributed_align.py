"""Entry point for the two-process alignment test: the real tiny-model plugins plus the fake test reward."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from tests.fakes import FakePlugin  # noqa: E402
from vist3a.cli import main  # noqa: E402
from vist3a.plugins import Plugins, set_plugins  # noqa: E402

if __name__ == "__main__":
    plugins = Plugins()
    plugins.load_entry_points({"vist3a_wan", "vist3a_vggt"})
    plugins.add(FakePlugin(), "fakes")
    set_plugins(plugins)
    sys.exit(main(sys.argv[1:]))
