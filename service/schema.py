"""What POST /classify takes and answers, as BentoML declares it: `/schema.json`, OpenAPI, its clients.

The endpoint reads its own body (service/uploads.read_upload: BentoML would
parse multipart without limits and fetch URLs), so BentoML must not: the input
spec `ClassifyRequest` describes the body, a multipart field `images` of one or
more image files, exactly as BentoML describes a `list[Path]` argument (so
`bentoml.SyncHTTPClient(...).classify(images=[Path(...)])` sends it), and hands
the endpoint nothing. The output spec `Predictions` describes the answer,
`list[Prediction]`, and encodes the endpoint's answers (the dicts
`contract.runtime.top_k_predictions` builds, with `model_sha256`) with orjson:
the same JSON as validating them into models, at a fraction of the cost.
tests/test_service_http.py holds every real answer to `Prediction` with extra
fields forbidden, so a field the contract adds fails there until it is added here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import bentoml
import orjson
from _bentoml_sdk.io_models import IORootModel
from bentoml.validators import ContentType
from pydantic import BaseModel, Field
from starlette.responses import Response

from contract.preprocess import ACCEPTED_NAMES


class ClassifyRequest(bentoml.IODescriptor):
    """POST /classify: one or more image files in multipart field `images`."""

    images: list[Annotated[Path, ContentType("image/*")]] = Field(
        min_length=1, description=f"image files ({ACCEPTED_NAMES}); the answers come in the same order"
    )

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> bentoml.IODescriptor:
        # The body is the endpoint's to read (read_upload, under our limits): BentoML passes the
        # endpoint the fields of what this returns, and _BodyUnread has none.
        return _BodyUnread()


class _BodyUnread(bentoml.IODescriptor):
    """No arguments: the endpoint reads the request body itself."""


class Candidate(BaseModel):
    """One entry of an answer's top_k list."""

    label: str = Field(description="class name, as in the model's metadata")
    class_id: int = Field(ge=0, description="class index in the model's output (Fashion-MNIST order)")
    probability: float = Field(ge=0, le=1, description="softmax probability, rounded to 4 decimals")


class Prediction(BaseModel):
    """The answer for one uploaded image."""

    label: str = Field(description="the most likely class", examples=["Sneaker"])
    class_id: int = Field(ge=0, description="its class index", examples=[7])
    confidence: float = Field(ge=0, le=1, description="its probability", examples=[0.973])
    top_k: list[Candidate] = Field(description="the most likely classes, most likely first")
    unsure: bool = Field(description="true when the confidence is below the threshold recorded in the model")
    model_sha256: str = Field(description="SHA-256 of the model file that answered (the registry's key)")


class Predictions(IORootModel[list[Prediction]]):
    """The answer of POST /classify: one Prediction per image, in upload order."""

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:
        return Response(orjson.dumps(obj), media_type="application/json")
