"""Remote black boxes: classifiers behind an Open Inference Protocol endpoint (docs/remote.md)."""

from .client import ClientConfig, Credentials, Traffic
from .endpoint import EndpointClassifier
from .oip import is_url
from .reveal import METHOD_NEEDS, check_method

__all__ = ["ClientConfig", "Credentials", "EndpointClassifier", "METHOD_NEEDS", "Traffic", "check_method", "is_url"]
