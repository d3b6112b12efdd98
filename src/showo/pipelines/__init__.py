"""User-facing pipelines: one object, one method per task."""
from ..errors import ShowoWarning
from .outputs import ImageOutput, TextOutput
from .showo_pipeline import ShowoPipeline

__all__ = ["ImageOutput", "ShowoPipeline", "ShowoWarning", "TextOutput"]
