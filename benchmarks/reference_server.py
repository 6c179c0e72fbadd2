"""The yardstick for benchmarks/load.py: one Starlette + onnxruntime process, no batching.

It does what the service does per request (parse the multipart upload, decode
and preprocess every image with contract.preprocess, one onnxruntime call, the
contract's JSON answer) with nothing else in the way: no BentoML, no batching,
no limits. Run: python -m benchmarks.reference_server --model M --port P
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
from contract.runtime import load_model


def build_app(model: str | None, threads: int) -> Starlette:
    classifier = load_model(model, device="cpu", threads=threads)

    async def classify(request: Request) -> JSONResponse:
        form = await request.form()
        crops = [to_fashion_mnist(decode_image(await f.read())) for f in form.getlist("images")]
        probabilities = classifier.probabilities(to_model_input(crops))
        return JSONResponse(classifier.answers(probabilities, 3))

    async def ready(_: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    return Starlette(routes=[Route("/classify", classify, methods=["POST"]), Route("/readyz", ready)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = build_app(args.model, args.threads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
