"""The ground floor: opening a model, turning images into model input, answering HTTP."""
