"""fertrain: from raw facial-expression datasets to a small, calibrated, deployable model.

    from fertrain import Recognizer
    faces = Recognizer("outputs/students/RUN").predict("photo.jpg")
"""

from fertrain.lazy import lazy_exports

__version__ = "0.1.0"
__getattr__, __dir__ = lazy_exports(__name__, {"Recognizer": "deploy.recognizer", "Face": "deploy.recognizer"})
