"""vist3a: text-to-3D by stitching a 3D reconstruction model to a video generator."""

from vist3a.errors import Vist3aError

__version__ = "0.1.0"

__all__ = ["Vist3aError", "__version__", "load_decoder", "load_generator", "load_reward"]


def __getattr__(name: str):
    # Loading helpers import the plugin system lazily so `import vist3a` stays cheap.
    if name in {"load_decoder", "load_generator", "load_reward"}:
        from vist3a import api

        return getattr(api, name)
    raise AttributeError(f"module 'vist3a' has no attribute {name!r}")
