"""Remote black boxes: classifiers behind an Open Inference Protocol endpoint (docs/remote.md)."""

from ..model import register_scheme
from .client import ClientConfig, Traffic
from .credentials import Credentials
from .endpoint import EndpointClassifier
from .oip import is_url

register_scheme(("http", "https", "grpc", "grpcs"), EndpointClassifier)  # bbx.model.open_model opens these addresses

__all__ = ["ClientConfig", "Credentials", "EndpointClassifier", "Traffic", "is_url"]
