"""What POST /classify takes and answers, as typed models for BentoML's schema, clients and OpenAPI.

The upload gate (service/uploads.py) reads and checks the multipart body
before BentoML sees it, so BentoML would otherwise describe /classify as taking
nothing. `ClassifyInput` declares the real input, a multipart field `images`
holding one or more files, which is what `/schema.json`, the OpenAPI document
(`/docs.json`), the API explorer and `bentoml.SyncHTTPClient` /
`bentoml.AsyncHTTPClient` (`client.classify(images=[Path(...)])`) go by; at
request time it takes the gate's checked images instead of parsing the body a
second time. `Prediction` is the answer's shape (docs/contract.md); the
answers themselves are built by `contract.runtime.top_k_predictions` (and
`model_sha256` by the service), and a field added there must be added here too: BentoML's clients keep only the
fields the schema names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from contract.preprocess import ACCEPTED_NAMES
from service.uploads import FIELD, SCOPE_KEY, Upload


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


class ClassifyInput(bentoml.IODescriptor):
    """POST /classify: one or more image files in multipart field `images`."""

    images: list[Annotated[Path, ContentType("image/*")]] = Field(
        min_length=1,
        description=f"image files ({ACCEPTED_NAMES}); the answers come in the same order",
    )

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> ClassifyInput:
        # The gate has consumed the body already; its checked batch is the endpoint's input.
        upload: Upload | None = request.scope.get(SCOPE_KEY)
        if upload is None:  # a wiring mistake (the gate not mounted on this route), not the client's
            raise RuntimeError(f"{request.url.path}: no upload from the upload gate (field '{FIELD}')")
        return cls.model_construct(images=upload)
