"""The ground floor: the model contract (metadata, opening and checking a model,
pixels → model input, softmax/top-k, the validation split a model records, where its
INT8 variant lives, calibration) and, beside it, the wardrobe store.

Everything above (service/, training/, photo_sim/, report/, the CLI) goes through this
package instead of re-doing any of it. See docs/architecture.md.
"""
