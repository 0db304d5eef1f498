"""Image input: bounded decoding, the weights' preset as data, and the fast and exact preprocessing paths.

Imports PIL and numpy only; torch and torchvision are imported on first use of the exact path.
"""

from ipex_resnet.errors import ImageError
from ipex_resnet.imaging.decode import (
    ALLOWED_FORMATS,
    ALLOWED_TEXT,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    Decoded,
    decode,
    describe_source,
    open_image,
    to_rgb,
)
from ipex_resnet.imaging.preprocessor import DEFAULT_MAX_RESIZED_PIXELS, MODE_ENV, MODES, Preprocessor
from ipex_resnet.imaging.preset import PresetSpec

__all__ = [
    "ALLOWED_FORMATS",
    "ALLOWED_TEXT",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_RESIZED_PIXELS",
    "IMAGE_EXTENSIONS",
    "MODES",
    "MODE_ENV",
    "Decoded",
    "ImageError",
    "PresetSpec",
    "Preprocessor",
    "decode",
    "describe_source",
    "open_image",
    "to_rgb",
]
