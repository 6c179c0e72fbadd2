"""A BentoML service that uses ours the documented way, `bentoml.depends(url=..., on=Wardrobe)`.

Served by tests/test_service_clients.py with WARDROBE_URL pointing at the wardrobe service.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml

from service.schema import Prediction
from service.service import Wardrobe


@bentoml.service(logging={"access": {"enabled": False}})
class Outfit:
    wardrobe = bentoml.depends(url=os.environ["WARDROBE_URL"], on=Wardrobe)

    @bentoml.api
    async def labels(self, images: list[Path]) -> list[str]:
        """The label of each image, as the wardrobe service answers it."""
        answers = await self.wardrobe.to_async.classify(images=images)
        assert all(isinstance(a, Prediction) for a in answers)  # typed answers, not dicts
        return [a.label for a in answers]
