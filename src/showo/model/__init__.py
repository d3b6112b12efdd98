"""The Show-o model: the Phi backbone over the joint text + image-code vocabulary, plus the CLIP projector."""
from .config import ShowoConfig
from .showo import Showo

__all__ = ["Showo", "ShowoConfig"]
