"""The ground floor: opening and checking a model, turning images into model input, answering HTTP."""
