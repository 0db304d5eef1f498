"""Image input: bounded decoding, the weights' preset as data, and the fast and exact preprocessing paths.

Imports PIL and numpy only; torch and torchvision are imported on first use of the exact path.
"""

from ..errors import ImageError
from .decode import (ALLOWED_FORMATS, ALLOWED_TEXT, DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, Decoded, decode,
                     describe_source, open_image, to_rgb)
from .preprocessor import DEFAULT_MAX_RESIZED_PIXELS, MODE_ENV, MODES, Preprocessor
from .preset import PresetSpec

__all__ = [
    "ALLOWED_FORMATS", "ALLOWED_TEXT", "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_RESIZED_PIXELS", "IMAGE_EXTENSIONS",
    "MODES", "MODE_ENV", "Decoded", "ImageError", "PresetSpec", "Preprocessor", "decode", "describe_source",
    "open_image", "to_rgb",
]
