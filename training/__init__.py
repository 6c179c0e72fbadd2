"""Training side of the wardrobe sorter: data, models, training loop, export."""
