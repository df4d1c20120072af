"""Remote black boxes: classifiers behind an Open Inference Protocol endpoint (docs/remote.md)."""

from .client import ClientConfig, Traffic
from .credentials import Credentials
from .endpoint import EndpointClassifier
from .oip import is_url

__all__ = ["ClientConfig", "Credentials", "EndpointClassifier", "Traffic", "is_url"]
